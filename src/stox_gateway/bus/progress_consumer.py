"""The AMQP door for progress: `step.progress` reports, beside the HTTP route and the gRPC
servicer, all three calling `facade.Gateway.report_progress` (DESIGN §11).

Acked once recorded or held by the rate gate. A report the gateway refuses because the step
moved on (409), or an unknown workflow, is acked and dropped with a log line: progress that
arrives after its step ended is expected and worth nothing, unlike a lost completion. A
malformed or forged one is dead-lettered as a completion would be.
"""

from __future__ import annotations

from typing import Any

import structlog

from stox_gateway.bus.completion_consumer import ReportConsumer
from stox_gateway.errors import Conflict, NotFound, StoxError
from stox_gateway.facade import progress_from_request
from stox_gateway.schemas import ProgressEnvelope

log = structlog.get_logger(__name__)


class ProgressConsumer(ReportConsumer):
    """Handles the deliveries of the shared `<prefix>.gateway.progress` queue."""

    envelope = ProgressEnvelope
    operation = "report_progress"
    late_event = "progress.dropped"

    async def apply(self, request: Any) -> None:
        await self._gateway.report_progress(progress_from_request(request))

    def refused(self, exc: StoxError) -> None:
        if not isinstance(exc, Conflict | NotFound):
            super().refused(exc)  # malformed in substance (413, 422): dead-lettered
        log.info("progress.dropped", reason=str(exc), via="amqp")
