"""One table from errors to HTTP answers; every error leaves as JSON (DESIGN §3).

`{"error": {"code": "...", "message": "...", "details": [...]}}`, never HTML or a stack trace.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from stox_gateway.api.responses import JsonResponse
from stox_gateway.auth import errors as auth_errors
from stox_gateway.auth.errors import AuthError
from stox_gateway.bus.port import BusError
from stox_gateway.engine import errors
from stox_gateway.grpc.auth_client import AuthServiceError

log = structlog.get_logger(__name__)

STATUS: dict[type[Exception], int] = {
    errors.WorkflowNotFound: 404,
    errors.CompletionRejected: 409,
    errors.UnknownWorkflowType: 422,
    errors.IdempotencyConflict: 422,
    errors.Unavailable: 503,
    BusError: 503,
}

AUTH_STATUS: dict[type[AuthError], int] = {
    auth_errors.InvalidArgument: 400,
    auth_errors.Unauthenticated: 401,
    auth_errors.NotFound: 404,
    auth_errors.AlreadyExists: 409,
}

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


class ApiError(Exception):
    """Raised by a route for a client mistake the type system cannot catch."""

    def __init__(
        self, status: int, code: str, message: str, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JsonResponse(body, status_code=status, headers=headers)


def status_for(exc: Exception) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


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

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JsonResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(errors.StoxError)
    async def stox_error(_: Request, exc: errors.StoxError) -> JsonResponse:
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        return error_response(status, exc.code, str(exc), headers=headers)

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JsonResponse:
        status = AUTH_STATUS.get(type(exc), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, exc.code, str(exc), headers=headers)

    @app.exception_handler(AuthServiceError)
    async def auth_service_error(_: Request, exc: AuthServiceError) -> JsonResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers=headers)

    @app.exception_handler(BusError)
    async def bus_error(_: Request, exc: BusError) -> JsonResponse:
        return error_response(503, "bus_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JsonResponse:
        log.exception("http.unhandled_error")
        return error_response(500, "internal_error", "an unexpected error occurred")
