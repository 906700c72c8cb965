"""How a worker tells the gateway a step's outcome: over the bus (AMQP) or HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stox_gateway import codec
from stox_gateway.bus.port import Bus, Message
from stox_gateway.schemas import CompletionEnvelope, StepCompletedRequest

log = structlog.get_logger(__name__)


class Reporter(Protocol):
    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        """Deliver the outcome; raise when it was not accepted and may be tried again."""


class BusReporter:
    """Publishes `step.completed` (DESIGN §5); the gateway acks it only after its commit."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        envelope = CompletionEnvelope(
            **completion.model_dump(),
            event_id=str(uuid.uuid4()),
            correlation_id=correlation_id,
            timestamp=datetime.now(UTC),
        )
        await self._bus.publish(
            Message(
                routing_key="step.completed",
                body=codec.dumps(envelope.model_dump(mode="json")),
                message_id=envelope.event_id or "",
                correlation_id=correlation_id,
            )
        )


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
        self._client = httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=10.0)
        self._attempts = attempts

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        headers = {"X-Correlation-ID": correlation_id} if correlation_id else {}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._client.post(
                    "/api/v1/workflow/step-completed",
                    content=codec.dumps(completion.model_dump(mode="json")),
                    headers={"Content-Type": "application/json", **headers},
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

    async def close(self) -> None:
        await self._client.aclose()
