"""The store port: what the engine, the outbox relay and the hub need from the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from stox_gateway.engine.models import Update, Workflow, WorkflowStatus
from stox_gateway.engine.transition import Transition


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    routing_key: str
    message_id: str
    correlation_id: str | None
    body: bytes
    mandatory: bool
    headers: dict[str, Any]
    available_at: datetime | None = None  # when it became due
    step_id: str | None = None  # a step message: the attempt it asks for
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowQuery:
    """Which workflows a list or a bulk action is about; every field left None matches all."""

    status: WorkflowStatus | None = None
    type: str | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    search: str | None = None  # words of the name or category, each a prefix
    owner: str | None = None
    ids: tuple[str, ...] | None = None
    id_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowPage:
    workflows: list[Workflow]
    total: int  # every match, not only this page; with `exact` False: at least this many
    exact: bool = True


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    scope: str
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class DueStep:
    workflow_id: str
    step_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Swept:
    """One sweep batch: how many due steps it claimed, and the timeouts it applied (fewer
    when a step moved on meanwhile)."""

    claimed: int
    transitions: list[Transition]


class OutboxBatch(Protocol):
    rows: Sequence[OutboxRow]

    async def mark_sent(self, ids: Sequence[int]) -> None: ...


class WorkflowStore(Protocol):
    async def start(self) -> None:
        """Create the schema if needed (or check migrations are applied)."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise `Unavailable` when the database does not answer."""

    async def create(
        self, transition: Transition, idempotency: IdempotencyKey | None = None
    ) -> str:
        """Insert a new workflow with its steps, updates and events, in one transaction.

        With an idempotency key already on record, nothing is inserted and the earlier
        workflow's id is returned (`IdempotencyConflict` when the request differs).
        """

    async def change(
        self, workflow_id: str, decide: Callable[[Workflow], Transition]
    ) -> Transition:
        """Lock the workflow, let `decide` compute the transition, persist it, commit.

        Raises `WorkflowNotFound`; whatever `decide` raises rolls the transaction back.
        """

    async def get(self, workflow_id: str) -> Workflow | None: ...

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        owner: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Workflow]: ...

    async def find_workflows(
        self, query: WorkflowQuery, *, limit: int = 50, offset: int = 0
    ) -> WorkflowPage:
        """A page of the workflows `query` matches, newest first, and how many match in all."""

    async def find_ids(self, query: WorkflowQuery, *, limit: int) -> list[str]:
        """The ids of the first `limit` workflows `query` matches, newest first."""

    async def updates(
        self, workflow_id: str, *, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[Update]: ...

    async def due_steps(self, now: datetime, limit: int = 100) -> list[DueStep]: ...

    async def time_out_due(
        self, now: datetime, limit: int, decide: Callable[[Workflow, DueStep], Transition]
    ) -> Swept:
        """Claim up to `limit` steps past their deadline that no other replica is deciding
        on, and commit `decide`'s transition for each, in one group-commit batch."""

    def claim_outbox(
        self, now: datetime, limit: int = 100
    ) -> AbstractAsyncContextManager[OutboxBatch]: ...

    async def outbox_backlog(self) -> int: ...

    async def extend_deadlines(self, rows: Sequence[OutboxRow], now: datetime) -> list[int]:
        """Step messages about to leave late: their running attempts' deadlines restart now.
        Returns the ids of the rows whose attempt is over (not to be sent)."""

    def exclusive(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Yield True when this process alone may do `name` now (one sweeper at a time)."""
        ...

    async def outbox_oldest_due(self, now: datetime) -> datetime | None:
        """When the oldest unsent row became due (None: nothing waiting)."""
