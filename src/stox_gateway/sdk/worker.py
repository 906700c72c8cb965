"""The worker: consume one step type's queue, call the handler, report, then ack."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from stox_gateway import codec, failures, routing
from stox_gateway.bus.patience import with_patience
from stox_gateway.bus.port import Bus, Delivery, QueueSpec, Reject, Subscription, Transient
from stox_gateway.observability.tracing import span
from stox_gateway.schemas import (
    MAX_PARTIAL_BYTES,
    StepCompletedRequest,
    StepEnvelope,
    StepProgressPart,
    StepProgressRequest,
)
from stox_gateway.sdk.context import ProgressSink, StepContext, bind_step, reset_step
from stox_gateway.sdk.errors import GatewayUnavailable, ReportRefused, StepError
from stox_gateway.sdk.journal import EffectsJournal
from stox_gateway.sdk.progress import ProgressBuffer
from stox_gateway.sdk.reporters import Refusal, Reporter

log = structlog.get_logger(__name__)

StepHandler = Callable[[StepContext], Awaitable[dict[str, Any]]]


def step_queue(step_type: str, prefix: str = "stox", **options: Any) -> QueueSpec:
    """The durable work queue of one step type: `<prefix>.step.<type>` bound to `step.<type>`."""
    return QueueSpec(
        name=routing.step_queue(prefix, step_type),
        bindings=(routing.step_routing_key(step_type),),
        **options,
    )


class Worker:
    """Serves one step type. Competing workers on one queue share its messages.

    The handler's return value is the step's result; raising `NonRetryable` fails the step for
    good, any other exception fails this attempt (the gateway retries while attempts remain).
    The message is acked only after the report was accepted, so a crash before that redelivers.
    A report the gateway cannot take for now (`GatewayUnavailable`) is tried again for up to
    `report_patience` seconds; then the message goes back to its queue uncounted (`Transient`),
    so an outage never dead-letters a step that ran.
    """

    def __init__(
        self,
        step_type: str,
        handler: StepHandler,
        *,
        bus: Bus,
        reporter: Reporter,
        queue_prefix: str = "stox",
        concurrency: int = 8,
        prefetch: int | None = None,
        effects_log: Path | None = None,
        report_patience: float = 15.0,
        report_retry_after: float = 1.0,
        refusals_before_giving_up: int = 3,
        report_progress: bool = True,
        progress_interval: float = 0.1,
        stale_grace: float = 2.0,
    ) -> None:
        self.step_type = step_type
        self._report_progress = report_progress
        self._progress_interval = progress_interval
        self._handler = handler
        self._bus = bus
        self._reporter = reporter
        self._queue = step_queue(
            step_type,
            queue_prefix,
            concurrency=concurrency,
            prefetch=prefetch or concurrency * 2,
        )
        self._journal = EffectsJournal(effects_log) if effects_log else None
        self._report_patience, self._report_retry_after = report_patience, report_retry_after
        self._subscription: Subscription | None = None
        self.handled = 0
        self.skipped_stale = 0  # messages whose attempt was over before they were handled
        self.stale_grace = stale_grace
        self.reports_refused = 0  # reports the gateway refused for their credentials
        self.refusals_before_giving_up = refusals_before_giving_up
        # Set when the first reports were all refused: this worker's token is wrong, and
        # `run_worker` exits non-zero rather than burn through every step's attempts.
        self.misconfigured = asyncio.Event()
        self._refused_at_start: set[int] = set()  # positions of the first reports (AMQP)

    @property
    def queue(self) -> QueueSpec:
        return self._queue

    async def start(self) -> None:
        watch = getattr(self._reporter, "watch_refusals", None)  # reporting over AMQP
        if watch is not None:
            await watch(self._on_refused)
        self._subscription = await self._bus.consume(self._queue, self._on_delivery)
        log.info("worker.started", step_type=self.step_type, queue=self._queue.name)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking messages; the ones in hand finish, report and ack (up to `grace`)."""
        if self._subscription is None:
            return
        subscription, self._subscription = self._subscription, None
        try:
            await asyncio.wait_for(subscription.cancel(), grace)
        except TimeoutError:
            log.warning("worker.stop_grace_exceeded", step_type=self.step_type)

    async def _on_delivery(self, delivery: Delivery) -> None:
        try:
            envelope = StepEnvelope.model_validate(codec.loads(delivery.message.body))
        except (ValidationError, ValueError) as exc:
            raise Reject(f"not a step message: {exc}") from exc
        ctx = StepContext(
            workflow_id=envelope.workflow_id,
            step_id=envelope.step_id,
            step_type=envelope.step_type,
            attempt=envelope.attempt,
            correlation_id=envelope.correlation_id or envelope.workflow_id,
            product=dict(envelope.data.get("product") or {}),
            results=dict(envelope.data.get("results") or {}),
        )
        if self._is_over(envelope, delivery.message.headers):
            # The gateway has counted this attempt as failed (and maybe started the next):
            # working on it would only produce a late report. Acked, not dead-lettered.
            self.skipped_stale += 1
            log.info(
                "worker.stale_attempt_skipped",
                step_type=ctx.step_type,
                workflow_id=ctx.workflow_id,
                attempt=ctx.attempt,
            )
            return
        step = ctx
        buffer: ProgressBuffer[StepProgressPart] = ProgressBuffer(
            lambda part: self._send_progress(step, part), self._progress_interval
        )
        if self._report_progress:
            ctx = dataclasses.replace(ctx, progress_sink=self._progress_sink(buffer))
        token = bind_step(ctx)
        bound = structlog.contextvars.bind_contextvars(
            workflow_id=ctx.workflow_id, correlation_id=ctx.correlation_id
        )
        try:
            with span(
                f"handle {ctx.step_type}",
                headers=delivery.message.headers,
                kind=SpanKind.CONSUMER,
                workflow_id=ctx.workflow_id,
                correlation_id=ctx.correlation_id,
                attempt=ctx.attempt,
            ):
                report = await self._handle_once(ctx, envelope.timeout)
                last = await buffer.close()
                if last is not None:  # recorded by the gateway just before the outcome
                    report = report.model_copy(update={"progress": last})
                await self._report(report, ctx.correlation_id)
            self.handled += 1
        finally:
            await buffer.close()  # a handler that raised leaves nothing behind
            structlog.contextvars.reset_contextvars(**bound)
            reset_step(token)

    def _progress_sink(self, buffer: ProgressBuffer[StepProgressPart]) -> ProgressSink:
        async def sink(
            ctx: StepContext,
            fraction: float | None,
            message: str | None,
            partial: dict[str, Any] | None,
        ) -> bool:
            # Only the report's own fields are checked here: most reports are replaced before
            # they leave, and the step's identity came from the gateway.
            report = StepProgressPart(fraction=fraction, message=message, partial=partial)
            if partial is not None and len(codec.dumps(partial)) > MAX_PARTIAL_BYTES:
                # The gateway would refuse it (413; over AMQP, a dead letter): not worth sending.
                log.warning("worker.progress_partial_too_large", step_type=ctx.step_type)
                return False
            buffer.offer(report)
            return True

        return sink

    async def _send_progress(self, ctx: StepContext, part: StepProgressPart) -> bool:
        send = getattr(self._reporter, "progress", None)
        if send is None:  # a reporter of its own without progress
            return False
        report = StepProgressRequest(
            workflow_id=ctx.workflow_id,
            step_id=ctx.step_id,
            step_type=ctx.step_type,
            attempt=ctx.attempt,
            fraction=part.fraction,
            message=part.message,
            partial=part.partial,
        )
        taken: bool = await send(report, ctx.correlation_id)
        return taken

    def _is_over(self, envelope: StepEnvelope, headers: dict[str, Any]) -> bool:
        """Whether the attempt's deadline (moved when the message left late) has passed, with
        `stale_grace` seconds for the clocks of two machines."""
        deadline = envelope.deadline_at
        if deadline is None:
            return False
        dispatched = headers.get(routing.DISPATCHED_AT_HEADER)
        if isinstance(dispatched, str) and envelope.timeout is not None:
            try:
                moved = datetime.fromisoformat(dispatched) + timedelta(seconds=envelope.timeout)
            except ValueError:
                moved = deadline
            deadline = max(deadline, moved)
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=UTC)
        return datetime.now(UTC) > deadline + timedelta(seconds=self.stale_grace)

    async def _report(self, report: StepCompletedRequest, correlation_id: str | None) -> None:
        """Deliver the report, waiting out an outage of the gateway or the broker (bounded).

        The step has run: a failed delivery would count towards the delivery limit and, after
        a few, dead-letter a step that succeeded. So retry here, then hand the message back
        uncounted; its redelivery is answered from the effects journal.
        """
        try:
            await with_patience(
                lambda: self._reporter.report(report, correlation_id),
                outage=GatewayUnavailable,
                patience=self._report_patience,
                retry_after=self._report_retry_after,
            )
        except Transient as exc:
            log.warning("worker.report_deferred", step_type=self.step_type, error=exc.reason)
            raise
        except ReportRefused as exc:
            self.reports_refused += 1
            log.error("worker.report_refused", step_type=self.step_type, error=str(exc))
            if self.handled == 0 and self.reports_refused >= self.refusals_before_giving_up:
                self.misconfigured.set()
            raise

    def _on_refused(self, refusal: Refusal) -> None:
        """A report sent over AMQP that the gateway refused (and dead-lettered): the same
        error line and count as a refused HTTP or gRPC report; the worker gives up when its
        first reports were all refused for their credentials."""
        self.reports_refused += 1
        if refusal.completion:
            self.handled -= 1  # counted when it was published: it did not count after all
        hint = (
            ": check auth.service_token (STOX_AUTH__SERVICE_TOKEN)" if refusal.credentials else ""
        )
        log.error(
            "worker.report_refused",
            step_type=self.step_type,
            error=f"the gateway refused a report ({refusal.reason}){hint}",
            code=refusal.code,
            message_id=refusal.message_id,
            via="amqp",
        )
        if (
            refusal.credentials
            and refusal.position is not None
            and refusal.position < self.refusals_before_giving_up
        ):
            self._refused_at_start.add(refusal.position)
            if len(self._refused_at_start) >= self.refusals_before_giving_up:
                self.misconfigured.set()

    async def _handle_once(self, ctx: StepContext, timeout: float | None) -> StepCompletedRequest:
        """Run the handler, unless the journal shows this attempt was handled already."""
        if self._journal is None:
            return await self._run(ctx, timeout)
        earlier = await self._journal.recorded(ctx)
        if earlier is not None:
            log.info("worker.repeat_answered_from_journal", step_type=ctx.step_type)
            return StepCompletedRequest.model_validate(earlier)
        report = await self._run(ctx, timeout)
        if not await self._journal.record(ctx, report.success, report.model_dump(mode="json")):
            earlier = await self._journal.recorded(ctx)  # another process won the race
            if earlier is not None:
                return StepCompletedRequest.model_validate(earlier)
        return report

    async def _run(self, ctx: StepContext, timeout: float | None) -> StepCompletedRequest:
        """The handler's outcome as a report. Past the attempt's `timeout` the handler is
        cancelled and the attempt reported failed: a stuck handler must not hold a slot of
        the worker for ever (the gateway has counted the attempt as failed by then anyway)."""
        base: dict[str, Any] = {
            "workflow_id": ctx.workflow_id,
            "step_id": ctx.step_id,
            "step_type": ctx.step_type,
            "attempt": ctx.attempt,
        }
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result = await self._handler(ctx)
        except TimeoutError as exc:
            if not deadline.expired():  # the handler's own timeout: a crash like any other
                log.exception("worker.step_crashed", step_type=ctx.step_type)
                return StepCompletedRequest(**base, success=False, error=_crash(ctx, exc))
            log.warning("worker.step_deadline", step_type=ctx.step_type, timeout=timeout)
            return StepCompletedRequest(
                **base, success=False, error=f"attempt exceeded its deadline of {timeout:g}s"
            )
        except StepError as exc:
            log.warning("worker.step_failed", step_type=ctx.step_type, error=str(exc))
            return StepCompletedRequest(
                **base,
                success=False,
                error=failures.join(str(exc), exc.detail),
                retryable=exc.retryable,
            )
        except Exception as exc:
            log.exception("worker.step_crashed", step_type=ctx.step_type)
            return StepCompletedRequest(**base, success=False, error=_crash(ctx, exc))
        return StepCompletedRequest(**base, success=True, result=result or {})


def _crash(ctx: StepContext, exc: BaseException) -> str:
    """A sentence for people; the exception, which may be a repr, only as the detail."""
    return failures.join(
        f"The {failures.step_name(ctx.step_type)} service failed unexpectedly.",
        f"{type(exc).__name__}: {exc}",
    )
