"""WorkflowService, served by the gateway beside HTTP (grpc.aio): a door to `facade.Gateway`.

Errors leave through `grpc/errors.py`'s interceptor, as the one table says.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from opentelemetry.trace import SpanKind

from stox_gateway.auth.guard import Caller, bearer
from stox_gateway.auth.server import add_standard_services
from stox_gateway.engine.models import Completion, Progress
from stox_gateway.facade import Gateway
from stox_gateway.grpc.convert import from_struct, update_message, workflow_message
from stox_gateway.grpc.errors import ErrorInterceptor
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc
from stox_gateway.observability.tracing import span

log = structlog.get_logger(__name__)


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        return self._gateway.guard.caller(bearer(_metadata(context, "authorization")))

    async def CompleteStep(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._gateway.guard.check_service(_metadata(context, "x-service-token"))
        with span(
            "complete_step",
            headers=dict(context.invocation_metadata() or ()),
            kind=SpanKind.SERVER,
            workflow_id=request.workflow_id,
            step_type=request.step_type,
            via="grpc",
        ):
            completion = Completion(
                workflow_id=request.workflow_id,
                step_id=request.step_id,
                step_type=request.step_type,
                success=request.success,
                result=from_struct(request.result),
                error=request.error or None,
                attempt=request.attempt if request.HasField("attempt") else None,
                retryable=request.retryable if request.HasField("retryable") else True,
                progress=_last_progress(request) if request.HasField("progress") else None,
            )
            outcome = await self._gateway.complete(completion)
        message = (
            "Step completion processed successfully"
            if outcome.applied
            else "Step completion already recorded"
        )
        return workflow_pb2.CompleteStepResponse(
            success=True, message=message, applied=outcome.applied
        )

    async def ReportProgress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._gateway.guard.check_service(_metadata(context, "x-service-token"))
        progress = Progress(
            workflow_id=request.workflow_id,
            step_id=request.step_id,
            step_type=request.step_type,
            attempt=request.attempt if request.HasField("attempt") else None,
            fraction=request.fraction if request.HasField("fraction") else None,
            message=request.message if request.HasField("message") else None,
            partial=from_struct(request.partial) if request.HasField("partial") else None,
        )
        recorded = await self._gateway.report_progress(progress)
        message = (
            "Step progress recorded"
            if recorded
            else "Step progress held; the latest is recorded next"
        )
        return workflow_pb2.ReportProgressResponse(success=True, message=message, recorded=recorded)

    async def GetWorkflow(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        workflow = await self._gateway.see(self._caller(context), request.workflow_id)
        return workflow_message(self._gateway.view(workflow))

    async def WatchWorkflow(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        since = request.since if request.HasField("since") else None
        watching = self._gateway.watch(self._caller(context), request.workflow_id or None, since)
        async with watching as watch:
            frames = await watch.first_frames()
            while frames:  # popped, so no sent frame stays alive with the stream
                yield update_message(frames.pop(0))
            del frames
            while (data := await watch.next()) is not None:
                yield update_message(data)


def _last_progress(request: Any) -> Progress:
    last = request.progress
    return Progress(
        workflow_id=request.workflow_id,
        step_id=request.step_id,
        step_type=request.step_type,
        attempt=request.attempt if request.HasField("attempt") else None,
        fraction=last.fraction if last.HasField("fraction") else None,
        message=last.message if last.HasField("message") else None,
        partial=from_struct(last.partial) if last.HasField("partial") else None,
    )


@contextlib.asynccontextmanager
async def workflow_server(gateway: Gateway, host: str, port: int) -> AsyncIterator[int]:
    """Serve WorkflowService (with reflection and health); yields the bound port."""
    # One process per port: without this, a second server would silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=[ErrorInterceptor()])
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(gateway), server)
    name = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
    add_standard_services(server, name)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("grpc.started", port=bound)
    try:
        yield bound
    finally:
        await server.stop(grace=1)
