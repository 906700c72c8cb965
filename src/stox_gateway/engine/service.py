"""The workflow engine: the only writer of workflow state.

Each operation locks one workflow in the store, runs the pure state machine, and commits the
new state together with its updates and outbox rows; then it wakes the outbox relay. Whether a
completion arrives over HTTP, gRPC or AMQP, on this replica or another, it goes through here.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from stox_gateway import codec
from stox_gateway.bus.outbox_relay import maybe_crash
from stox_gateway.engine import machine
from stox_gateway.engine.definitions import Definitions
from stox_gateway.engine.errors import CompletionRejected, WorkflowNotFound
from stox_gateway.engine.models import (
    JSON,
    Completion,
    Progress,
    Update,
    UpdateType,
    Workflow,
    WorkflowStatus,
)
from stox_gateway.engine.transition import Transition, chain
from stox_gateway.store.port import (
    DueStep,
    IdempotencyKey,
    Swept,
    WorkflowPage,
    WorkflowQuery,
    WorkflowStore,
)

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


# Jitter from a generator of its own, never the `random` module's shared state: code in the
# same process (a test's Hypothesis, a simulation with a seed) must not see it move.
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """`base · 2^(attempt-1)`, capped, with full jitter on the upper half (no thundering herd)."""

    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(seconds=60)
    rng: random.Random | None = None

    def __call__(self, failed_attempt: int, base: float | None = None) -> float:
        """`base` (seconds): the step's own `retry_backoff`, instead of this one's."""
        first = self.base.total_seconds() if base is None else base
        ceiling = min(self.cap.total_seconds(), first * 2 ** (failed_attempt - 1))
        draw = (self.rng or _JITTER).random()
        return float(ceiling * (0.5 + draw / 2))


@dataclass(frozen=True, slots=True)
class CompletionOutcome:
    workflow: Workflow
    applied: bool  # False: a repeat of an outcome already recorded


class WorkflowEngine:
    def __init__(
        self,
        store: WorkflowStore,
        definitions: Definitions,
        *,
        backoff: machine.Backoff | None = None,
        clock: Clock = utcnow,
        on_commit: Callable[[], None] = lambda: None,
        on_transition: Callable[[Transition, datetime], None] | None = None,
    ) -> None:
        self._store = store
        self._definitions = definitions
        self._backoff = backoff or ExponentialBackoff()
        self._clock = clock
        self._on_commit = on_commit
        self._on_transition = on_transition

    @property
    def definitions(self) -> Definitions:
        return self._definitions

    async def create(
        self,
        product: JSON,
        *,
        correlation_id: str | None = None,
        owner: str | None = None,
        workflow_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Start a workflow. With `idempotency_key`, a repeat of the same request (same key,
        same product, same owner) returns the workflow the first one started."""
        workflow_type = workflow_type or self._definitions.default_type
        definition = self._definitions.get(workflow_type)
        workflow_id = new_id()
        transition = machine.create(
            definition,
            workflow_id=workflow_id,
            product=product,
            correlation_id=correlation_id or workflow_id,
            owner=owner,
            now=self._clock(),
            new_id=new_id,
        )
        idempotency = None
        if idempotency_key is not None:
            digest = hashlib.sha256(codec.dumps([workflow_type, product])).hexdigest()
            idempotency = IdempotencyKey(owner or "", idempotency_key, digest)
        created = await self._store.create(transition, idempotency)
        if created != workflow_id:
            return await self.get(created)
        self._committed(transition)
        return transition.workflow

    async def complete_step(
        self, completion: Completion, *, progress: Sequence[Progress] = ()
    ) -> CompletionOutcome:
        """Apply a service's report; `progress`: reports of the step held back by the rate
        gate, recorded first in the same transaction (those that no longer fit are dropped)."""

        def decide(workflow: Workflow) -> Transition:
            now = self._clock()
            recorded: list[Transition] = []
            for report in progress:
                try:
                    recorded.append(
                        machine.report_progress(workflow, report, now=now, new_id=new_id)
                    )
                except CompletionRejected:
                    continue
                workflow = recorded[-1].workflow
            outcome = machine.complete_step(
                workflow, completion, now=now, new_id=new_id, backoff=self._backoff
            )
            return chain([*recorded, outcome]) if recorded else outcome

        transition = await self._store.change(completion.workflow_id, decide)
        self._committed(transition)
        return CompletionOutcome(transition.workflow, transition.applied)

    async def report_progress(self, progress: Progress) -> Workflow:
        """Record a running step's progress (`step_progress`); a report that does not fit the
        workflow's state raises a `CompletionRejected` (409) and changes nothing."""

        def decide(workflow: Workflow) -> Transition:
            return machine.report_progress(workflow, progress, now=self._clock(), new_id=new_id)

        transition = await self._store.change(progress.workflow_id, decide)
        self._committed(transition)
        return transition.workflow

    async def time_out_step(self, workflow_id: str, step_id: str, attempt: int) -> bool:
        def decide(workflow: Workflow) -> Transition:
            return machine.time_out_step(
                workflow,
                step_id,
                attempt,
                now=self._clock(),
                new_id=new_id,
                backoff=self._backoff,
            )

        transition = await self._store.change(workflow_id, decide)
        self._committed(transition)
        return transition.applied

    async def time_out_due(self, due_before: datetime, limit: int) -> Swept:
        """Time out, in one batch, up to `limit` steps whose deadline passed before
        `due_before` and that no other replica is timing out right now."""

        def decide(workflow: Workflow, due: DueStep) -> Transition:
            return machine.time_out_step(
                workflow,
                due.step_id,
                due.attempt,
                now=self._clock(),
                new_id=new_id,
                backoff=self._backoff,
            )

        swept = await self._store.time_out_due(due_before, limit, decide)
        for transition in swept.transitions:
            self._committed(transition)
        return swept

    async def cancel(self, workflow_id: str) -> Workflow:
        def decide(workflow: Workflow) -> Transition:
            return machine.cancel(workflow, now=self._clock(), new_id=new_id)

        transition = await self._store.change(workflow_id, decide)
        self._committed(transition)
        return transition.workflow

    async def retry(self, workflow_id: str) -> Workflow:
        def decide(workflow: Workflow) -> Transition:
            # The budget comes from the workflow's own stored definition, not today's config.
            return machine.retry(workflow, now=self._clock(), new_id=new_id)

        transition = await self._store.change(workflow_id, decide)
        self._committed(transition)
        return transition.workflow

    async def get(self, workflow_id: str) -> Workflow:
        workflow = await self._store.get(workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id)
        return workflow

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Workflow]:
        return await self._store.list_workflows(
            status=status, owner=owner, limit=limit, offset=offset
        )

    async def find_workflows(
        self, query: WorkflowQuery, *, limit: int = 50, offset: int = 0
    ) -> WorkflowPage:
        return await self._store.find_workflows(query, limit=limit, offset=offset)

    async def find_ids(self, query: WorkflowQuery, *, limit: int) -> list[str]:
        return await self._store.find_ids(query, limit=limit)

    async def updates(self, workflow_id: str, *, after_seq: int = 0, **kw: Any) -> list[Update]:
        return await self._store.updates(workflow_id, after_seq=after_seq, **kw)

    def _committed(self, transition: Transition) -> None:
        if not transition.applied:
            return
        maybe_crash("after_commit_before_publish")
        if self._on_transition is not None:
            self._on_transition(transition, transition.workflow.updated_at)
        wf = transition.workflow
        for update in transition.updates:
            # Step-level lines at debug: the hot path stays quiet at info (one line per
            # workflow start and end).
            level = log.info if update.type in _MILESTONES else log.debug
            level(
                str(update.type),
                workflow_id=wf.id,
                correlation_id=wf.correlation_id,
                seq=update.seq,
                **_log_fields(update),
            )
        self._on_commit()


_MILESTONES = frozenset(
    {
        UpdateType.WORKFLOW_STARTED,
        UpdateType.WORKFLOW_COMPLETED,
        UpdateType.WORKFLOW_FAILED,
        UpdateType.WORKFLOW_CANCELLED,
        UpdateType.STEP_RETRYING,
    }
)


def _log_fields(update: Update) -> dict[str, Any]:
    data = update.data
    fields: dict[str, Any] = {k: data[k] for k in ("step_type", "attempt", "error") if k in data}
    return fields
