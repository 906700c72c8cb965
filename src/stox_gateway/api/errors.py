"""Errors leave HTTP as JSON (DESIGN §3), their status from the one table in `stox_gateway.errors`.

`{"error": {"code": "...", "message": "...", "details": [...]}}`, never HTML or a stack trace.
Anything unexpected is a generic `500 {"error": {"code": "internal", ..., "correlation_id"}}`:
what went wrong is logged under that id, and nothing of it reaches the client.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stox_gateway.api.responses import JsonResponse
from stox_gateway.errors import StoxError, answer_for, is_internal

log = structlog.get_logger(__name__)

INTERNAL_MESSAGE = "an unexpected error occurred; quote the correlation id when reporting it"

# The framework's own refusals (routing, methods, the body limit) by status.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(StoxError):
    """Raised by a route for a client mistake the type system cannot catch, with its status."""

    def __init__(
        self, status: int, code: str, message: str, details: list[Any] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.http_status, self.message, self.details = status, message, details or []


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JsonResponse(body, status_code=status, headers=headers)


def status_for(exc: BaseException) -> int:
    return answer_for(exc).http


def stox_error_response(exc: StoxError, correlation_id: str = "") -> JsonResponse:
    """The answer to one of our errors; the generic one where its text must not leave."""
    if is_internal(exc):
        return internal_response(exc, correlation_id)
    status = status_for(exc)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        headers = {"Retry-After": "5"}
    details = getattr(exc, "details", None)
    return error_response(status, exc.code, str(exc), details, headers=headers)


def internal_response(
    exc: BaseException, correlation_id: str, *, with_header: bool = False
) -> JsonResponse:
    """The generic 500. `with_header`: the answer is sent from outside the correlation id
    middleware (an exception that reached the outermost handler), so it sets the header."""
    log.error("http.unhandled_error", correlation_id=correlation_id, exc_info=exc)
    body = {
        "error": {
            "code": "internal",
            "message": INTERNAL_MESSAGE,
            "details": [],
            "correlation_id": correlation_id,
        }
    }
    headers = {"X-Correlation-ID": correlation_id} if with_header and correlation_id else None
    return JsonResponse(body, status_code=500, headers=headers)


def _correlation_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("correlation_id", ""))


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]),
            "location": str(e["loc"][0]),
            "message": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        details = _field_errors(exc)
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(
                400, "invalid_json", "the request body is not valid JSON", details
            )
        if all(d["location"] in ("query", "path", "header") for d in details):
            return error_response(400, "invalid_parameter", "invalid query parameters", details)
        return error_response(422, "validation_error", "the request body is invalid", details)

    @app.exception_handler(StoxError)
    async def stox_error(request: Request, exc: StoxError) -> JsonResponse:
        return stox_error_response(exc, _correlation_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JsonResponse:
        return internal_response(exc, _correlation_id(request), with_header=True)
