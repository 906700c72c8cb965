"""The AMQP door for completions: `step.completed` reports, beside the HTTP route and the gRPC
servicer, all three calling `facade.Gateway.complete`.

A report is acked only after the engine committed it, or dead-lettered with the reason when
the gateway refuses it (unknown workflow, a report that does not fit, malformed or forged). A
late report, for an attempt that is already over, is acked, counted and logged at info.
A refused report whose worker named itself (`routing.REFUSALS_TO_HEADER`) is also answered
on `report.refused.<worker>`, so the worker can log it and stop when its token is wrong.
`ReportConsumer` is the part the progress consumer (`progress_consumer.py`) shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from stox_gateway import codec
from stox_gateway.bus.patience import with_patience
from stox_gateway.bus.port import Bus, BusError, Delivery, Message, Reject
from stox_gateway.engine.errors import StaleAttempt, StepNotRunning, WorkflowEnded
from stox_gateway.errors import StoxError, Unavailable, answer_for
from stox_gateway.facade import Gateway, completion_from_request
from stox_gateway.observability.tracing import span
from stox_gateway.routing import REFUSALS_TO_HEADER, refusal_routing_key
from stox_gateway.schemas import CompletionEnvelope, ProgressEnvelope

log = structlog.get_logger(__name__)

# Reports for an attempt that is already over: acked and counted, not dead-lettered.
LATE = (StaleAttempt, WorkflowEnded, StepNotRunning)


class ReportConsumer:
    """A service's reports from one shared queue: checked credentials, a parsed envelope, then
    the façade's call, patient with the database; subclasses name the envelope and the call.

    A report waits `patience` seconds (with backoff) for the database before it is handed back
    to its queue, uncounted, to be tried again `retry_after` seconds later: a failed delivery
    counts towards the bus's delivery limit, which is there for poison messages, and a restart
    of the database would otherwise dead-letter valid reports within a second.
    """

    envelope: type[CompletionEnvelope] | type[ProgressEnvelope]
    operation = ""  # the span's name and the log lines' prefix
    late_event = "completion.late"

    def __init__(
        self,
        gateway: Gateway,
        *,
        patience: float = 15.0,
        retry_after: float = 1.0,
        on_late: Callable[[str], None] | None = None,
        bus: Bus | None = None,
    ):
        self._gateway = gateway
        self._bus = bus  # where refusals go back to their workers; None: they do not
        self.patience, self.retry_after = patience, retry_after
        self._on_late = on_late

    async def apply(self, request: Any) -> None:
        raise NotImplementedError

    def refused(self, exc: StoxError) -> None:
        """A refusal will not change on redelivery: keep the report, with the reason."""
        log.warning(f"{self.operation}.refused", reason=str(exc), via="amqp")
        raise Reject(str(exc)) from exc

    async def __call__(self, delivery: Delivery) -> None:
        try:
            await self._handle(delivery.message)
        except Reject as exc:
            await self._answer_refusal(delivery.message, exc)
            raise

    async def _answer_refusal(self, message: Message, refusal: Reject) -> None:
        """Best effort: the refusal is dead-lettered with its reason whatever happens here."""
        key = refusal_routing_key(message.headers.get(REFUSALS_TO_HEADER))
        if self._bus is None or key is None:
            return
        cause = refusal.__cause__
        notice = {
            "event_type": "report.refused",
            "message_id": message.message_id,
            "routing_key": message.routing_key,
            "code": cause.code if isinstance(cause, StoxError) else "invalid_argument",
            "reason": refusal.reason[:500],
        }
        try:
            await self._bus.publish(
                Message(routing_key=key, body=codec.dumps(notice), message_id=message.message_id)
            )
        except BusError as exc:
            log.warning("report.refusal_not_answered", error=str(exc))

    async def _handle(self, message: Message) -> None:
        try:
            self._gateway.guard.check_service(message.headers.get("x-service-token"))
        except StoxError as exc:
            raise Reject(f"refused: {exc}") from exc
        try:
            request = self.envelope.model_validate(codec.loads(message.body))
        except (ValidationError, ValueError) as exc:
            kind = self.envelope.model_fields["event_type"].default
            raise Reject(f"malformed {kind} message: {exc}") from exc
        bound = structlog.contextvars.bind_contextvars(
            workflow_id=request.workflow_id,
            correlation_id=request.correlation_id or message.correlation_id,
        )
        try:
            with span(
                self.operation,
                headers=message.headers,
                kind=SpanKind.CONSUMER,
                workflow_id=request.workflow_id,
                step_type=request.step_type,
                via="amqp",
            ):
                await with_patience(
                    lambda: self.apply(request),
                    outage=Unavailable,
                    patience=self.patience,
                    retry_after=self.retry_after,
                    on_first_wait=lambda error: log.warning(
                        f"{self.operation}.waiting_for_database", error=str(error), via="amqp"
                    ),
                )
        except LATE as exc:
            # Expected after a timeout or a failure elsewhere in the workflow: the attempt is
            # over and its report changes nothing, so it is no error to keep.
            log.info(self.late_event, reason=str(exc), code=exc.code, via="amqp")
            if self._on_late is not None:
                self._on_late(request.step_type)
        except StoxError as exc:
            if answer_for(exc).http >= 500:
                raise
            self.refused(exc)
        finally:
            structlog.contextvars.reset_contextvars(**bound)


class CompletionConsumer(ReportConsumer):
    """Handles the deliveries of the shared `<prefix>.gateway.completed` queue."""

    envelope = CompletionEnvelope
    operation = "complete_step"

    async def apply(self, request: Any) -> None:
        await self._gateway.complete(completion_from_request(request))

    def refused(self, exc: StoxError) -> None:
        log.warning("completion.refused", reason=str(exc), via="amqp")
        raise Reject(str(exc)) from exc
