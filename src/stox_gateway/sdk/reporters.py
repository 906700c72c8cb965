"""How a worker tells the gateway a step's outcome, and its progress while it runs: over the
bus (AMQP), HTTP or gRPC. Progress is sent once, never retried: the next report supersedes it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stox_gateway import codec
from stox_gateway.bus.port import Bus, BusError, Delivery, Message, QueueSpec, Reject, Subscription
from stox_gateway.config.settings import Settings
from stox_gateway.observability.tracing import trace_headers
from stox_gateway.routing import (
    REFUSALS_TO_HEADER,
    STEP_COMPLETED,
    STEP_PROGRESS,
    refusal_queue,
    refusal_routing_key,
)
from stox_gateway.schemas import (
    CompletionEnvelope,
    ProgressEnvelope,
    StepCompletedRequest,
    StepProgressRequest,
)
from stox_gateway.sdk.errors import GatewayUnavailable, ReportRefused
from stox_gateway.sdk.grpc_reporter import GrpcReporter

log = structlog.get_logger(__name__)


class Reporter(Protocol):
    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        """Deliver the outcome; raise when it was not accepted and may be tried again
        (`GatewayUnavailable` when the failure is an outage rather than the report's)."""

    async def progress(self, report: StepProgressRequest, correlation_id: str | None) -> bool:
        """Send a progress report once; whether the gateway took it (recorded or held)."""

    async def close(self) -> None: ...


class _HttpReportRefused(ReportRefused, httpx.HTTPStatusError):
    """Still an `HTTPStatusError`, for callers that handle HTTP errors as such."""


def make_reporter(settings: Settings, bus: Bus, *, grpc_target: str | None = None) -> Reporter:
    """The reporter `workers.report_via` names, with the service token when one is set."""
    token = settings.auth.service_token.get_secret_value() if settings.auth.service_token else None
    via = settings.workers.report_via
    if via == "http":
        return HttpReporter(settings.workers.gateway_url, service_token=token)
    if via == "grpc":
        return GrpcReporter(grpc_target or settings.workers.gateway_grpc, service_token=token)
    return BusReporter(bus, service_token=token, queue_prefix=settings.rabbitmq.queue_prefix)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A report of this worker's that the gateway refused, told back over AMQP."""

    message_id: str
    code: str
    reason: str
    # Which of this worker's completions it was (0: the first), for the first few; None for
    # a later one or a progress report.
    position: int | None
    completion: bool = True  # False: a progress report

    @property
    def credentials(self) -> bool:
        return self.code in ("unauthenticated", "forbidden")


class BusReporter:
    """Publishes `step.completed` and `step.progress` (DESIGN §5); the gateway acks a report
    only after its commit. A refused report is dead-lettered by the gateway, which also tells
    this reporter on `report.refused.<name>` (`watch_refusals`): without that, a worker with
    the wrong token would count every step as done while none is."""

    FIRST_TRACKED = 16  # completions whose position a refusal reports

    def __init__(
        self,
        bus: Bus,
        *,
        service_token: str | None = None,
        queue_prefix: str = "stox",
        name: str | None = None,
    ) -> None:
        self._bus = bus
        self.name = name or uuid.uuid4().hex
        self._prefix = queue_prefix
        self._headers: dict[str, Any] = {REFUSALS_TO_HEADER: self.name}
        if service_token:
            self._headers["x-service-token"] = service_token
        self._first: dict[str, int] = {}  # message id → position, for the first completions
        self._subscription: Subscription | None = None

    async def watch_refusals(self, on_refused: Callable[[Refusal], None]) -> None:
        """Take the gateway's refusals of this reporter's reports from an exclusive queue."""

        async def handle(delivery: Delivery) -> None:
            try:
                notice = codec.loads(delivery.message.body)
                message_id, code = str(notice["message_id"]), str(notice["code"])
                reason = str(notice.get("reason", ""))[:500]
            except (ValueError, KeyError, TypeError) as exc:
                raise Reject(f"not a refusal notice: {exc}") from exc
            completion = notice.get("routing_key") != STEP_PROGRESS
            on_refused(Refusal(message_id, code, reason, self._first.get(message_id), completion))

        key = refusal_routing_key(self.name)
        if key is None:
            raise ValueError(f"not a worker name for the bus: {self.name!r}")
        queue = QueueSpec(
            name=refusal_queue(self._prefix, self.name),
            bindings=(key,),
            durable=False,
            exclusive=True,
            dead_letter=False,
            prefetch=16,
            max_length=1000,
        )
        self._subscription = await self._bus.consume(queue, handle)

    def _message(
        self, routing_key: str, envelope: CompletionEnvelope | ProgressEnvelope
    ) -> Message:
        return Message(
            routing_key=routing_key,
            body=codec.dumps(envelope.model_dump(mode="json")),
            message_id=envelope.event_id or "",
            correlation_id=envelope.correlation_id,
            headers={**self._headers, **trace_headers()},
        )

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        envelope = CompletionEnvelope(
            **completion.model_dump(),
            event_id=str(uuid.uuid4()),
            correlation_id=correlation_id,
            timestamp=datetime.now(UTC),
        )
        message = self._message(STEP_COMPLETED, envelope)
        # Its position is known before the publish: the gateway's refusal can come back
        # before the broker's confirm does.
        tracked = len(self._first) < self.FIRST_TRACKED
        if tracked:
            self._first[message.message_id] = len(self._first)
        try:
            await self._bus.publish(message)
        except BusError as exc:  # the broker is away, or did not confirm
            if tracked:
                del self._first[message.message_id]
            raise GatewayUnavailable(f"step.completed not published: {exc}") from exc

    async def progress(self, report: StepProgressRequest, correlation_id: str | None) -> bool:
        """Publishes `step.progress`; taken once the broker confirms it (the gateway drops
        one that no longer fits, see `bus/progress_consumer.py`)."""
        envelope = ProgressEnvelope(
            **report.model_dump(),
            event_id=str(uuid.uuid4()),
            correlation_id=correlation_id,
            timestamp=datetime.now(UTC),
        )
        try:
            await self._bus.publish(self._message(STEP_PROGRESS, envelope))
        except BusError as exc:
            log.info("worker.progress_not_published", error=str(exc))
            return False
        return True

    async def close(self) -> None:
        """Stops watching refusals; the bus belongs to whoever made it."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(BusError):
                await subscription.cancel()


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return isinstance(exc, httpx.TransportError)


class HttpReporter:
    """POSTs to `/api/v1/workflow/step-completed`, retrying 5xx and connection errors.

    A 404 or 409 is final (the gateway refused this report for good): logged, not retried.
    """

    def __init__(
        self, gateway_url: str, *, service_token: str | None = None, attempts: int = 5
    ) -> None:
        headers = {"X-Service-Token": service_token} if service_token else {}
        # Idle connections expire before the gateway's idle timeout (server.idle_timeout, 5 s)
        # closes them, so a report is not sent on a connection that is being closed.
        self._client = httpx.AsyncClient(
            base_url=gateway_url,
            headers=headers,
            timeout=10.0,
            limits=httpx.Limits(keepalive_expiry=2),
        )
        self._attempts = attempts

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else {}
        headers.update(trace_headers())
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._client.post(
                        "/api/v1/workflow/step-completed",
                        content=codec.dumps(completion.model_dump(mode="json")),
                        headers={"Content-Type": "application/json", **headers},
                    )
                    if response.status_code in (401, 403):
                        raise _HttpReportRefused(
                            f"the gateway answered {response.status_code}: check "
                            "auth.service_token (STOX_AUTH__SERVICE_TOKEN)",
                            request=response.request,
                            response=response,
                        )
                    if response.status_code in (404, 409):
                        log.warning(
                            "worker.report_refused",
                            status=response.status_code,
                            body=response.text[:500],
                            workflow_id=completion.workflow_id,
                        )
                        return
                    response.raise_for_status()
        except httpx.HTTPError as exc:
            if _retryable(exc):
                raise GatewayUnavailable(f"the gateway did not take the report: {exc}") from exc
            raise

    async def progress(self, report: StepProgressRequest, correlation_id: str | None) -> bool:
        headers = {"Content-Type": "application/json", **trace_headers()}
        if correlation_id:
            headers["X-Correlation-ID"] = correlation_id
        response = await self._client.post(
            "/api/v1/workflow/step-progress",
            content=codec.dumps(report.model_dump(mode="json", exclude_none=True)),
            headers=headers,
        )
        if response.is_success:
            return True
        log.info("worker.progress_refused", status=response.status_code, body=response.text[:300])
        return False

    async def close(self) -> None:
        await self._client.aclose()
