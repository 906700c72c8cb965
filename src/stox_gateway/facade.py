"""One way in: complete a step, report its progress, see a workflow, watch workflows
(STYLE §16).

HTTP routes, the WebSocket, the gRPC WorkflowService and the AMQP report consumers are
doors to the same room; each turns its transport's request into a call here, so a rule such
as "a user sees only their own workflows" or "no control characters in a report" is written
once, and each door only translates the errors (`stox_gateway.errors`) into its own answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from stox_gateway import codec
from stox_gateway.auth.guard import Caller, Guard
from stox_gateway.bus.services import ServiceWatcher
from stox_gateway.engine.errors import PartialTooLarge, WorkflowNotFound
from stox_gateway.engine.models import JSON, Completion, Progress, Workflow, WorkflowStatus
from stox_gateway.engine.progress_gate import ProgressGate
from stox_gateway.engine.service import CompletionOutcome, WorkflowEngine
from stox_gateway.errors import Conflict, InvalidInput, NotFound, Unprocessable
from stox_gateway.hub import Hub, Subscriber
from stox_gateway.hub.feed import first_frames
from stox_gateway.schemas import MAX_PARTIAL_BYTES, StepCompletedRequest, StepProgressRequest
from stox_gateway.store.port import WorkflowPage, WorkflowQuery
from stox_gateway.text import control_character, control_in_json
from stox_gateway.wire import WaitingFor, workflow_to_wire

MAX_SEQ = 2**63 - 1  # the store's seq is a signed 64-bit integer
BAD_PARAMETER = "invalid_parameter"
MAX_BULK_IDS = 1000  # ids named in one bulk request

BulkAction = Literal["retry", "cancel"]
_DONE = {"retry": "retried", "cancel": "cancelled"}


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk action did: each workflow acted on, skipped by its own rules (a completed
    one is not retried), or not found (unknown, or not the caller's)."""

    action: BulkAction
    matched: int
    done: int
    skipped: int
    not_found: int
    limited: bool  # more matched the filter than one bulk action takes

    def to_wire(self) -> dict[str, int | bool]:
        return {
            _DONE[self.action]: self.done,
            "skipped": self.skipped,
            "not_found": self.not_found,
            "matched": self.matched,
            "limited": self.limited,
        }


async def bulk_act(
    engine: WorkflowEngine,
    action: BulkAction,
    query: WorkflowQuery,
    *,
    named: Sequence[str] = (),
    batch_size: int = 100,
    max_items: int = 10_000,
) -> BulkOutcome:
    """Retry or cancel what `query` matches, `batch_size` at a time (one group commit each),
    at most `max_items`; `named`: the ids asked for, those not matched count as not found."""
    found = await engine.find_ids(query, limit=max_items + 1)
    limited = len(found) > max_items
    found = found[:max_items]
    act = engine.retry if action == "retry" else engine.cancel
    done = skipped = missing = 0
    for start in range(0, len(found), batch_size):
        batch = found[start : start + batch_size]
        for outcome in await asyncio.gather(*(act(i) for i in batch), return_exceptions=True):
            if isinstance(outcome, Conflict):
                skipped += 1
            elif isinstance(outcome, NotFound):
                missing += 1
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                done += 1
    missing += len(set(named)) - len(found) if named else 0
    return BulkOutcome(action, len(found), done, skipped, missing, limited)


def completion_from_request(request: StepCompletedRequest) -> Completion:
    last = request.progress
    return Completion(
        workflow_id=request.workflow_id,
        step_id=request.step_id,
        step_type=request.step_type,
        success=request.success,
        result=request.result,
        error=request.error,
        attempt=request.attempt,
        retryable=request.retryable,
        progress=None
        if last is None
        else Progress(
            workflow_id=request.workflow_id,
            step_id=request.step_id,
            step_type=request.step_type,
            attempt=request.attempt,
            fraction=last.fraction,
            message=last.message,
            partial=last.partial,
        ),
    )


def progress_from_request(request: StepProgressRequest) -> Progress:
    return Progress(
        workflow_id=request.workflow_id,
        step_id=request.step_id,
        step_type=request.step_type,
        attempt=request.attempt,
        fraction=request.fraction,
        message=request.message,
        partial=request.partial,
    )


class Watch:
    """One subscriber's view: the first frames, then each live update it has not had."""

    def __init__(
        self,
        engine: WorkflowEngine,
        subscriber: Subscriber,
        since: int | None,
        waiting_for: WaitingFor | None = None,
    ) -> None:
        self._engine, self.subscriber, self._since = engine, subscriber, since
        self._waiting_for = waiting_for

    async def first_frames(self) -> list[str]:
        """A snapshot, or the updates after `since`: callers send and drop them (see feed.py)."""
        return await first_frames(self._engine, self.subscriber, self._since, self._waiting_for)

    async def next(self) -> str | None:
        """The next update's text; None when the hub ends the watch (see `dropped`)."""
        while True:
            frame = await self.subscriber.queue.get()
            if frame is None:
                return None
            if not self.subscriber.already_has(frame):
                return frame.data

    @property
    def dropped(self) -> bool:
        """Whether the hub ended the watch because the client read too slowly."""
        return self.subscriber.dropped


class Gateway:
    def __init__(
        self,
        engine: WorkflowEngine,
        guard: Guard,
        hub: Hub,
        *,
        queue_size: int = 256,
        services: ServiceWatcher | None = None,
        bulk_batch_size: int = 100,
        bulk_max: int = 10_000,
        progress_per_second: float = 10.0,
    ) -> None:
        self.engine, self.guard, self.hub = engine, guard, hub
        self._queue_size = queue_size
        self.services = services
        self._bulk_batch_size, self._bulk_max = bulk_batch_size, bulk_max
        self.progress_gate = ProgressGate(engine.report_progress, per_second=progress_per_second)

    def view(self, workflow: Workflow) -> JSON:
        """The status answer's shape, each waiting step saying which service it waits for."""
        return workflow_to_wire(workflow, self._waiting_for())

    def _waiting_for(self) -> WaitingFor | None:
        return self.services.waiting_for if self.services else None

    async def complete(self, completion: Completion) -> CompletionOutcome:
        """Record a service's report; a repeat of a recorded outcome is applied=False."""
        _check_completion(completion)
        # A progress report held for this attempt goes on record with the outcome, just
        # before it, in the same transaction: never lost, and the outcome does not wait.
        held = self.progress_gate.take_held(
            completion.workflow_id, completion.step_id, completion.attempt
        )
        if completion.progress is not None:  # the worker's last report: later than any held
            _check_progress(completion.progress)
            held.append(completion.progress)
        return await self.engine.complete_step(completion, progress=held)

    async def report_progress(self, progress: Progress) -> bool:
        """Record a running step's progress (DESIGN §11): True when recorded now, False when
        held for the step's next slot (the latest report wins it)."""
        _check_progress(progress)
        return await self.progress_gate.offer(progress)

    async def close(self) -> None:
        await self.progress_gate.close()

    async def see(self, caller: Caller, workflow_id: str) -> Workflow:
        """The workflow, if the caller may see it; another user's is not found, as if absent."""
        _check_id(workflow_id)
        workflow = await self.engine.get(workflow_id)
        if not self.guard.may_see(caller, workflow.owner):
            raise WorkflowNotFound(workflow_id)
        return workflow

    async def list(
        self, caller: Caller, *, status: WorkflowStatus | None, limit: int, offset: int
    ) -> list[Workflow]:
        return await self.engine.list_workflows(
            status=status, owner=self.guard.owner_filter(caller), limit=limit, offset=offset
        )

    async def find(
        self, caller: Caller, query: WorkflowQuery, *, limit: int, offset: int
    ) -> WorkflowPage:
        """A page of the workflows the caller may see that `query` matches, and their total."""
        for name in ("type", "search"):
            found = control_character(getattr(query, name) or "")
            if found:
                raise InvalidInput(f"{name}: control characters are refused", code=BAD_PARAMETER)
        scoped = dataclasses.replace(query, owner=self.guard.owner_filter(caller))
        return await self.engine.find_workflows(scoped, limit=limit, offset=offset)

    async def bulk(
        self,
        caller: Caller,
        action: BulkAction,
        query: WorkflowQuery | None = None,
        ids: Sequence[str] | None = None,
    ) -> BulkOutcome:
        """Retry or cancel many workflows, named by `ids` or matched by `query` (not both),
        each by its own rules, among those the caller may see (as the single routes)."""
        if (query is None) == (ids is None):
            raise InvalidInput("give a filter or ids: one of the two", code=BAD_PARAMETER)
        owner = self.guard.owner_filter(caller)
        if ids is not None:
            if len(ids) > MAX_BULK_IDS:
                raise InvalidInput(f"at most {MAX_BULK_IDS} ids at once", code=BAD_PARAMETER)
            for workflow_id in ids:
                _check_id(workflow_id)
            query = WorkflowQuery(ids=tuple(dict.fromkeys(ids)), owner=owner)
        else:
            assert query is not None
            query = dataclasses.replace(query, owner=owner, ids=None)
        return await bulk_act(
            self.engine,
            action,
            query,
            named=ids or (),
            batch_size=self._bulk_batch_size,
            max_items=self._bulk_max,
        )

    @contextlib.asynccontextmanager
    async def watch(
        self, caller: Caller, workflow_id: str | None, since: int | None = None
    ) -> AsyncIterator[Watch]:
        """Follow one workflow (or, with None, every one the caller may see), subscribed
        before the state is read so nothing committed in between is lost."""
        if since is not None and not 0 <= since <= MAX_SEQ:
            message = f"since must be a whole number from 0 to {MAX_SEQ}"
            raise InvalidInput(message, code=BAD_PARAMETER)
        if workflow_id is not None:
            await self.see(caller, workflow_id)
        subscriber = Subscriber(
            workflow_id, owner=self.guard.owner_filter(caller), queue_size=self._queue_size
        )
        await self.hub.follow(subscriber)  # bound on the bus before the state is read
        try:
            yield Watch(self.engine, subscriber, since, self._waiting_for())
        finally:
            await self.hub.unfollow(subscriber)


def _check_id(workflow_id: str) -> None:
    if control_character(workflow_id):
        raise InvalidInput("workflow_id: control characters are refused", code=BAD_PARAMETER)


def _check_progress(progress: Progress) -> None:
    for name in ("workflow_id", "step_id", "step_type"):
        found = control_character(getattr(progress, name))
        if found:
            raise Unprocessable(f"{name}: control characters are refused ({found})")
    if progress.fraction is not None and not 0.0 <= progress.fraction <= 1.0:
        raise Unprocessable("fraction: a number from 0 to 1")
    if progress.message is not None:
        found = control_character(progress.message)
        if found:
            raise Unprocessable(f"message: control characters are refused ({found})")
    if progress.partial is not None:
        size = len(codec.dumps(progress.partial))
        if size > MAX_PARTIAL_BYTES:
            raise PartialTooLarge(
                f"partial: {size} bytes as JSON, more than the limit of {MAX_PARTIAL_BYTES}"
            )
        found = control_in_json(progress.partial)
        if found:
            raise Unprocessable(f"partial: control characters are refused ({found})")


def _check_completion(completion: Completion) -> None:
    for name in ("workflow_id", "step_id", "step_type"):
        found = control_character(getattr(completion, name))
        if found:
            raise Unprocessable(f"{name}: control characters are refused ({found})")
    if completion.error is not None:
        found = control_character(completion.error, multiline=True)
        if found:
            raise Unprocessable(f"error: control characters are refused ({found})")
    found = control_in_json(completion.result)
    if found:
        raise Unprocessable(f"result: control characters are refused ({found})")
