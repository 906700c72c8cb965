"""Every routing key and queue name on the bus, in one place (DESIGN §5).

Routing keys on the topic exchange:

    workflow.start | workflow.completed | workflow.failed    the workflow's life
    step.<type>                                              a step is due, for its service
    step.completed                                           a service's report over AMQP
    step.progress                                            a running step's progress, over AMQP
    gateway.update                                           WebSocket updates between replicas
    gateway.update.o.<n> | gateway.update.w.<n>              an update's owner / workflow bucket
    report.refused.<worker>                                  a refused report, back to its worker

An update message is published once, with the key `gateway.update`, and carries in its `BCC`
header the bucket keys of every owner and workflow it holds (RabbitMQ routes it by each of them,
once per queue, and strips the header). A replica's update queue is bound only to the buckets
its clients follow, or to `gateway.update` itself when one of them watches everything.

Queues (all under `rabbitmq.queue_prefix`):

    <prefix>.step.<type>                 durable, competing workers of one step type
    <prefix>.gateway.completed           durable, the reports every replica consumes
    <prefix>.gateway.progress            durable, the progress reports every replica consumes
    <prefix>.gateway.updates.<replica>   exclusive, bounded: one replica's copy of the updates
                                         its clients follow
    <prefix>.worker.<worker>.refusals    exclusive: a worker's refused reports (AMQP reporting)
    <queue>.dead                         what <queue> could not process, via <exchange>.dlx
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

WORKFLOW_START = "workflow.start"
WORKFLOW_COMPLETED = "workflow.completed"
WORKFLOW_FAILED = "workflow.failed"
STEP_COMPLETED = "step.completed"
STEP_PROGRESS = "step.progress"
GATEWAY_UPDATE = "gateway.update"
# The header carrying an update message's bucket keys: RabbitMQ's sender-selected
# distribution routes the message by each of them too, and removes the header on delivery.
UPDATE_BUCKETS_HEADER = "BCC"
OWNER_BUCKETS = 1024
WORKFLOW_BUCKETS = 4096

# On a step message that left the outbox late: when it left (its attempt's deadline runs from
# then, not from the `deadline_at` in its body).
DISPATCHED_AT_HEADER = "x-stox-dispatched-at"

# A worker reporting over AMQP names itself here; a report the gateway refuses is answered on
# `report.refused.<name>`. Only a checked name goes into the key: a forged header must not make
# the gateway publish under a key of the sender's choosing (a step message, say).
REFUSALS_TO_HEADER = "x-stox-refusals-to"
_REFUSED = "report.refused."
_WORKER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_STEP = "step."
# Keys under `step.` that are reports to the gateway, not work for a service.
REPORT_KEYS = frozenset({STEP_COMPLETED, STEP_PROGRESS})


def step_routing_key(step_type: str) -> str:
    """The key a step of `step_type` is sent with: `step.<type>`."""
    return f"{_STEP}{step_type}"


def is_step_message(routing_key: str) -> bool:
    """Whether a message is work for a step's service (not a report to the gateway)."""
    return routing_key.startswith(_STEP) and routing_key not in REPORT_KEYS


def step_queue(prefix: str, step_type: str) -> str:
    """The durable work queue of one step type: `<prefix>.step.<type>`."""
    return f"{prefix}.{_STEP}{step_type}"


def refusal_routing_key(worker: object) -> str | None:
    """The key a refusal goes back to `worker` with, or None when `worker` is not a name."""
    if isinstance(worker, str) and _WORKER_NAME.fullmatch(worker):
        return f"{_REFUSED}{worker}"
    return None


def refusal_queue(prefix: str, worker: str) -> str:
    """One worker's exclusive queue of refusals of its reports."""
    return f"{prefix}.worker.{worker}.refusals"


def completion_queue(prefix: str) -> str:
    """The durable queue of `step.completed` reports, shared by the replicas."""
    return f"{prefix}.gateway.completed"


def progress_queue(prefix: str) -> str:
    """The durable queue of `step.progress` reports, apart from completions so a flood of
    progress never delays an outcome."""
    return f"{prefix}.gateway.progress"


def update_queue(prefix: str, replica_id: str) -> str:
    """One replica's own queue of `gateway.update` messages."""
    return f"{prefix}.gateway.updates.{replica_id}"


def dead_letter_exchange(exchange: str) -> str:
    """The direct exchange dead letters go through, routed by the name of their queue."""
    return f"{exchange}.dlx"


def dead_letter_queue(queue: str) -> str:
    """Where what `queue` could not process is kept, with the reason."""
    return f"{queue}.dead"


def owner_update_key(owner: str) -> str:
    """The bucket key of one owner's updates: `gateway.update.o.<n>`."""
    return f"{GATEWAY_UPDATE}.o.{_bucket(owner, OWNER_BUCKETS)}"


def workflow_update_key(workflow_id: str) -> str:
    """The bucket key of one workflow's updates: `gateway.update.w.<n>`."""
    return f"{GATEWAY_UPDATE}.w.{_bucket(workflow_id, WORKFLOW_BUCKETS)}"


def update_bucket_keys(owners: Iterable[str | None], workflow_ids: Iterable[str]) -> list[str]:
    """The bucket keys of an update message holding these owners' and workflows' updates."""
    keys = {owner_update_key(o) for o in owners if o}
    keys.update(workflow_update_key(w) for w in workflow_ids)
    return sorted(keys)


def _bucket(value: str, buckets: int) -> int:
    # crc32, not hash(): every replica must put a name in the same bucket.
    return zlib.crc32(value.encode()) % buckets
