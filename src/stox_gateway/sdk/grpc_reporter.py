"""A worker's reports over gRPC: `WorkflowService.CompleteStep` and `ReportProgress`."""

from __future__ import annotations

from typing import Any

import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stox_gateway.observability.tracing import trace_headers
from stox_gateway.schemas import StepCompletedRequest, StepProgressRequest
from stox_gateway.sdk.errors import GatewayUnavailable, ReportRefused

log = structlog.get_logger(__name__)


class GrpcReporter:
    """Calls `WorkflowService.CompleteStep`; retries UNAVAILABLE, treats refusals as final."""

    def __init__(
        self,
        target: str,
        *,
        service_token: str | None = None,
        attempts: int = 5,
        timeout: float = 10.0,
    ) -> None:
        import grpc

        from stox_gateway.grpc.generated.stox.v1 import workflow_pb2_grpc

        self._grpc = grpc
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = workflow_pb2_grpc.WorkflowServiceStub(self._channel)
        self._metadata = (("x-service-token", service_token),) if service_token else ()
        self._attempts, self._timeout = attempts, timeout

    async def report(self, completion: StepCompletedRequest, correlation_id: str | None) -> None:
        from stox_gateway.grpc.convert import to_struct
        from stox_gateway.grpc.generated.stox.v1 import workflow_pb2

        grpc = self._grpc
        request = workflow_pb2.CompleteStepRequest(
            workflow_id=completion.workflow_id,
            step_id=completion.step_id,
            step_type=completion.step_type,
            success=completion.success,
            result=to_struct(completion.result),
            error=completion.error or "",
            retryable=completion.retryable,
        )
        if completion.attempt is not None:
            request.attempt = completion.attempt
        last = completion.progress
        if last is not None:
            request.progress.SetInParent()
            if last.fraction is not None:
                request.progress.fraction = last.fraction
            if last.message is not None:
                request.progress.message = last.message
            if last.partial is not None:
                request.progress.partial.CopyFrom(to_struct(last.partial))
        metadata = self._metadata + tuple(trace_headers().items())
        if correlation_id:
            metadata += (("x-correlation-id", correlation_id),)

        def transient(exc: BaseException) -> bool:
            return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        try:
            await self._call(request, metadata, retrying, completion.workflow_id)
        except grpc.aio.AioRpcError as exc:
            if transient(exc):
                raise GatewayUnavailable(f"CompleteStep: {exc.code().name}") from exc
            raise

    async def _call(
        self,
        request: Any,
        metadata: tuple[tuple[str, str], ...],
        retrying: AsyncRetrying,
        workflow_id: str,
    ) -> None:
        grpc = self._grpc
        async for attempt in retrying:
            with attempt:
                try:
                    await self._stub.CompleteStep(request, timeout=self._timeout, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.PERMISSION_DENIED,
                    ):
                        raise ReportRefused(
                            f"the gateway answered {exc.code().name}: check "
                            "auth.service_token (STOX_AUTH__SERVICE_TOKEN)"
                        ) from exc
                    if exc.code() in (
                        grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.FAILED_PRECONDITION,
                    ):
                        log.warning(
                            "worker.report_refused",
                            status=exc.code().name,
                            detail=exc.details(),
                            workflow_id=workflow_id,
                        )
                        return
                    raise

    async def progress(self, report: StepProgressRequest, correlation_id: str | None) -> bool:
        from stox_gateway.grpc.convert import to_struct
        from stox_gateway.grpc.generated.stox.v1 import workflow_pb2

        request = workflow_pb2.ReportProgressRequest(
            workflow_id=report.workflow_id, step_id=report.step_id, step_type=report.step_type
        )
        if report.attempt is not None:
            request.attempt = report.attempt
        if report.fraction is not None:
            request.fraction = report.fraction
        if report.message is not None:
            request.message = report.message
        if report.partial is not None:
            request.partial.CopyFrom(to_struct(report.partial))
        metadata = self._metadata + tuple(trace_headers().items())
        if correlation_id:
            metadata += (("x-correlation-id", correlation_id),)
        try:
            await self._stub.ReportProgress(request, timeout=self._timeout, metadata=metadata)
        except self._grpc.aio.AioRpcError as exc:
            log.info("worker.progress_refused", status=exc.code().name, detail=exc.details())
            return False
        return True

    async def close(self) -> None:
        await self._channel.close()
