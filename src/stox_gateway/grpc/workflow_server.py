"""WorkflowService, served by the gateway beside HTTP (grpc.aio)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from opentelemetry.trace import SpanKind

from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.auth.guard import Caller, bearer
from stox_gateway.auth.server import add_standard_services
from stox_gateway.engine.errors import CompletionRejected, WorkflowNotFound
from stox_gateway.engine.models import Completion
from stox_gateway.grpc.convert import from_struct, update_message, workflow_message
from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc
from stox_gateway.hub import Subscriber
from stox_gateway.hub.feed import first_frames
from stox_gateway.observability.tracing import span
from stox_gateway.wire import workflow_to_wire

if TYPE_CHECKING:
    from stox_gateway.runtime import Runtime

log = structlog.get_logger(__name__)


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            return str(item.value)
    return None


class WorkflowServicer(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def _caller(self, context: grpc.aio.ServicerContext) -> Caller:
        try:
            return self._runtime.guard.caller(bearer(_metadata(context, "authorization")))
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise  # unreachable: abort raises

    async def CompleteStep(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self._runtime.guard.check_service(_metadata(context, "x-service-token"))
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        with span(
            "complete_step",
            headers=dict(context.invocation_metadata() or ()),
            kind=SpanKind.SERVER,
            workflow_id=request.workflow_id,
            step_type=request.step_type,
            via="grpc",
        ):
            return await self._complete(request, context)

    async def _complete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        completion = Completion(
            workflow_id=request.workflow_id,
            step_id=request.step_id,
            step_type=request.step_type,
            success=request.success,
            result=from_struct(request.result),
            error=request.error or None,
            attempt=request.attempt if request.HasField("attempt") else None,
            retryable=request.retryable if request.HasField("retryable") else True,
        )
        try:
            outcome = await self._runtime.engine.complete_step(completion)
        except WorkflowNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except CompletionRejected as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{exc.code}: {exc}")
        message = (
            "Step completion processed successfully"
            if outcome.applied
            else "Step completion already recorded"
        )
        return workflow_pb2.CompleteStepResponse(
            success=True, message=message, applied=outcome.applied
        )

    async def GetWorkflow(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = await self._caller(context)
        try:
            workflow = await self._runtime.engine.get(request.workflow_id)
        except WorkflowNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if not self._runtime.guard.may_see(caller, workflow.owner):
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id} not found"
            )
        return workflow_message(workflow_to_wire(workflow))

    async def WatchWorkflow(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        caller = await self._caller(context)
        runtime = self._runtime
        workflow_id = request.workflow_id or None
        if workflow_id is not None:
            try:
                workflow = await runtime.engine.get(workflow_id)
            except WorkflowNotFound as exc:
                await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            if not runtime.guard.may_see(caller, workflow.owner):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"workflow {workflow_id} not found")
        subscriber = Subscriber(
            workflow_id,
            owner=runtime.guard.owner_filter(caller),
            queue_size=runtime.settings.websocket.client_queue_size,
        )
        runtime.hub.subscribe(subscriber)
        try:
            since = request.since if request.HasField("since") else None
            frames = await first_frames(runtime.engine, subscriber, since)
            while frames:  # popped, so no sent frame stays alive with the stream
                yield update_message(frames.pop(0))
            del frames
            while True:
                item = await subscriber.queue.get()
                if item is None:
                    return
                if subscriber.already_has(item):
                    continue
                yield update_message(item.data)
        finally:
            runtime.hub.unsubscribe(subscriber)


@contextlib.asynccontextmanager
async def workflow_server(runtime: Runtime, host: str, port: int) -> AsyncIterator[int]:
    """Serve WorkflowService (with reflection and health); yields the bound port."""
    # One process per port: without this, a second server would silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(runtime), server)
    name = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
    add_standard_services(server, name)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("grpc.started", port=bound)
    try:
        yield bound
    finally:
        await server.stop(grace=1)
