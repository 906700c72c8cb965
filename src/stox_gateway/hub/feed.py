"""What a new subscriber sees first, the same for the WebSocket and `WatchWorkflow`.

Subscribe to the hub *before* reading the state, so nothing committed in between is lost; the
floors set here make the writer skip what the first frames already cover.

The frames are text (a WebSocket sends them as text frames). Callers send and drop them: a
snapshot of 100 workflows is ~130 KB, and one kept alive by a connection handler's locals for
the life of the connection was most of an idle client's memory (184 KiB of it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog

from stox_gateway import codec
from stox_gateway.engine.errors import WorkflowNotFound
from stox_gateway.engine.service import WorkflowEngine
from stox_gateway.hub.hub import Hub, Subscriber
from stox_gateway.wire import WaitingFor, update_to_wire, workflow_to_wire

SNAPSHOT_LIMIT = 100

log = structlog.get_logger(__name__)


async def first_frames(
    engine: WorkflowEngine,
    subscriber: Subscriber,
    since: int | None,
    waiting_for: WaitingFor | None = None,
) -> list[str]:
    now = datetime.now(UTC)
    workflow_id = subscriber.workflow_id
    if workflow_id is not None and since is not None:
        missed = await engine.updates(workflow_id, after_seq=since)
        subscriber.floors[workflow_id] = missed[-1].seq if missed else since
        return [codec.dumps_str(update_to_wire(u)) for u in missed]
    if workflow_id is not None:
        workflow = await engine.get(workflow_id)
        subscriber.floors[workflow_id] = workflow.seq
        return [_snapshot(workflow_id, workflow.seq, now, workflow_to_wire(workflow, waiting_for))]
    workflows = await engine.list_workflows(limit=SNAPSHOT_LIMIT, owner=subscriber.owner)
    for workflow in workflows:
        subscriber.floors[workflow.id] = workflow.seq
    data = {"workflows": [workflow_to_wire(w, waiting_for) for w in workflows]}
    return [_snapshot(None, 0, now, data)]


def _snapshot(workflow_id: str | None, seq: int, now: datetime, data: dict[str, Any]) -> str:
    return codec.dumps_str(
        {"type": "snapshot", "workflow_id": workflow_id, "seq": seq, "timestamp": now, "data": data}
    )


async def catch_up(engine: WorkflowEngine, hub: Hub) -> int:
    """Bring every followed workflow up to date from the event log, after the update queue
    lost messages (a reconnect). Followed: each workflow a subscriber follows by id, and for
    subscribers of every workflow, the latest `SNAPSHOT_LIMIT` of their owner (what their
    snapshot showed). Returns how many updates went out."""
    targets: dict[str, tuple[str | None, int]] = {}  # workflow → (owner, seq)
    for workflow_id in hub.followed_workflows():
        try:
            workflow = await engine.get(workflow_id)
        except WorkflowNotFound:
            continue
        targets[workflow.id] = (workflow.owner, workflow.seq)
    for owner in hub.firehose_owners():
        for workflow in await engine.list_workflows(limit=SNAPSHOT_LIMIT, owner=owner):
            targets[workflow.id] = (workflow.owner, workflow.seq)
    sent = 0
    for workflow_id, (owner, seq) in targets.items():
        sent += await hub.catch_up(workflow_id, owner, seq)
    log.info("hub.caught_up", workflows=len(targets), updates=sent)
    return sent
