"""`/api/v1/auth/*`: register, login, validate, refresh, profile — through the gRPC AuthService."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from stox_gateway.api.deps import get_runtime, require_json
from stox_gateway.api.errors import ApiError
from stox_gateway.api.login_throttle import LoginThrottle
from stox_gateway.api.responses import JsonResponse
from stox_gateway.auth.guard import bearer
from stox_gateway.auth.service import MAX_PASSWORD, password_problems
from stox_gateway.grpc.auth_client import AuthClient
from stox_gateway.runtime import Runtime
from stox_gateway.schemas import ErrorResponse, SingleLine

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), SingleLine
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 415, 422, 429, 503, 504)
}


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Annotated[EmailStr, SingleLine]
    password: str = Field(max_length=MAX_PASSWORD)
    first_name: Name
    last_name: Name

    @field_validator("password")
    @classmethod
    def _strong(cls, value: str) -> str:
        problems = password_problems(value)
        if problems:
            raise ValueError("the password needs " + ", ".join(problems))
        return value


class LoginRequest(BaseModel):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320), SingleLine]
    password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD)]


class ValidateRequest(BaseModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class UserOut(BaseModel):
    id: str
    email: str
    first_name: str
    last_name: str
    created_at: str


class SessionOut(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


class ValidationOut(BaseModel):
    valid: bool
    user_id: str | None
    email: str | None
    expires_at: int | None


async def auth_client(request: Request) -> AuthClient:
    runtime: Runtime = get_runtime(request)
    if runtime.auth_client is None:
        raise ApiError(503, "auth_unavailable", "the auth service is not configured")
    return runtime.auth_client


Client = Annotated[AuthClient, Depends(auth_client)]
JSON_BODY = [Depends(require_json)]


@router.post(
    "/register",
    status_code=201,
    response_model=SessionOut,
    responses=_ERRORS,
    dependencies=JSON_BODY,
)
async def register(body: RegisterRequest, client: Client, request: Request) -> Response:
    """Create a user; answers with a first session (access and refresh token)."""
    refused = _throttle(request).refuse(request, None)
    if refused is not None:
        return refused
    session = await client.register(body.email, body.password, body.first_name, body.last_name)
    return JsonResponse(session, status_code=201)


@router.post("/login", response_model=SessionOut, responses=_ERRORS, dependencies=JSON_BODY)
async def login(body: LoginRequest, client: Client, request: Request) -> Response:
    refused = _throttle(request).refuse(request, body.email)
    if refused is not None:
        return refused
    return JsonResponse(await client.login(body.email, body.password))


def _throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle


@router.post("/validate", response_model=ValidationOut, responses=_ERRORS)
async def validate(
    client: Client,
    body: ValidateRequest | None = None,
    authorization: Annotated[str | None, Header()] = None,
) -> JsonResponse:
    """Is a token valid? The token in the body, or in `Authorization: Bearer`."""
    token = body.token if body else bearer(authorization)
    if not token:
        raise ApiError(400, "missing_token", 'send {"token": ...} or Authorization: Bearer …')
    return JsonResponse(await client.validate(token))


@router.post("/refresh", response_model=SessionOut, responses=_ERRORS, dependencies=JSON_BODY)
async def refresh(body: RefreshRequest, client: Client) -> JsonResponse:
    """Spend a refresh token for a new pair (a spent one used again revokes the login)."""
    return JsonResponse(await client.refresh(body.refresh_token))


@router.get("/profile", response_model=UserOut, responses=_ERRORS)
async def profile(
    client: Client, authorization: Annotated[str | None, Header()] = None
) -> JsonResponse:
    token = bearer(authorization)
    if not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <access token>")
    return JsonResponse(await client.profile(token))
