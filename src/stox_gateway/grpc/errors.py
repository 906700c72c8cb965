"""Errors leave gRPC as the one table in `stox_gateway.errors` says, on every server we run.

An interceptor wraps each async method: one of our errors is aborted with its status and its
message, its code in the trailing metadata `x-error-code`; anything else is logged with the
call's correlation id and answered `INTERNAL` with only that id, so no SQL or stack text
reaches a client.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from stox_gateway.errors import StoxError, answer_for, is_internal

log = structlog.get_logger(__name__)

CORRELATION_KEY = "x-correlation-id"
CODE_KEY = "x-error-code"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def error_code(exc: grpc.aio.AioRpcError) -> str:
    """The code a server of ours put in the trailer, else the status name (lower case)."""
    for key, value in exc.trailing_metadata() or ():
        if key == CODE_KEY:
            return str(value)
    return str(exc.code().name.lower())


def correlation_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's `x-correlation-id` when well formed, else a new one."""
    for item in context.invocation_metadata() or ():
        if item.key == CORRELATION_KEY and _VALID_ID.match(str(item.value)):
            return str(item.value)
    return str(uuid.uuid4())


async def abort_with(
    context: grpc.aio.ServicerContext, exc: BaseException, correlation: str
) -> None:
    """Abort the call as the table says (raises `grpc.aio.AbortError`)."""
    trailer: tuple[tuple[str, str], ...] = ((CORRELATION_KEY, correlation),)
    if isinstance(exc, StoxError) and not is_internal(exc):
        status = grpc.StatusCode[answer_for(exc).grpc]
        trailer += ((CODE_KEY, exc.code),)
        await context.abort(status, str(exc), trailing_metadata=trailer)
    log.error("grpc.unhandled_error", correlation_id=correlation, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal: an unexpected error occurred (correlation id {correlation})",
        trailing_metadata=trailer,
    )


def _unary(behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        correlation = correlation_id(context)
        with structlog.contextvars.bound_contextvars(correlation_id=correlation):
            try:
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc, correlation)

    return call


def _stream(behaviour: Callable[..., AsyncGenerator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        correlation = correlation_id(context)
        with structlog.contextvars.bound_contextvars(correlation_id=correlation):
            try:
                # Closed here, not when collected: its `finally` (an unsubscribe) runs now.
                async with contextlib.aclosing(behaviour(request, context)) as stream:
                    async for item in stream:
                        yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with(context, exc, correlation)

    return call


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Translate errors at the edge for every async unary or server-streaming method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
