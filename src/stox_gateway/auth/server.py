"""AuthService over gRPC: the servicer, and the server the CLI and the gateway start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.ext.asyncio import AsyncEngine

from stox_gateway.auth import errors
from stox_gateway.auth.repository import AuthRepository, User
from stox_gateway.auth.service import AuthService, Session
from stox_gateway.config.settings import Settings
from stox_gateway.grpc.errors import ErrorInterceptor
from stox_gateway.grpc.generated.stox.v1 import auth_pb2, auth_pb2_grpc
from stox_gateway.store.sql import SqlStore

log = structlog.get_logger(__name__)


def user_message(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        email=user.email,
        first_name=user.first_name,
        last_name=user.last_name,
        created_at=user.created_at.isoformat().replace("+00:00", "Z"),
    )


def session_message(session: Session) -> auth_pb2.AuthResponse:
    return auth_pb2.AuthResponse(
        user=user_message(session.user),
        access_token=session.access_token,
        refresh_token=session.refresh_token,
        expires_in=session.expires_in,
        token_type="Bearer",
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self._service = service

    async def _call(self, context: grpc.aio.ServicerContext, action: Any) -> Any:
        # What it raises leaves as `grpc/errors.py`'s interceptor says.
        return await action()

    async def Register(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def action() -> Any:
            session = await self._service.register(
                request.email, request.password, request.first_name, request.last_name
            )
            return session_message(session)

        return await self._call(context, action)

    async def Login(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def action() -> Any:
            return session_message(await self._service.login(request.email, request.password))

        return await self._call(context, action)

    async def ValidateToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            claims = self._service.validate(request.token)
        except errors.Unauthenticated:
            return auth_pb2.ValidateTokenResponse(valid=False)
        return auth_pb2.ValidateTokenResponse(
            valid=True,
            user_id=claims.user_id,
            email=claims.email,
            expires_at=int(claims.expires_at.timestamp()),
        )

    async def RefreshToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def action() -> Any:
            return session_message(await self._service.refresh(request.refresh_token))

        return await self._call(context, action)

    async def GetProfile(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def action() -> Any:
            return user_message(await self._service.profile(request.access_token))

        return await self._call(context, action)


def add_standard_services(server: grpc.aio.Server, *service_names: str) -> None:
    """Server reflection and the standard health service, on every server we run."""
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*service_names, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*service_names, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )


@contextlib.asynccontextmanager
async def auth_server(
    settings: Settings, *, host: str, port: int, engine: AsyncEngine | None = None
) -> AsyncIterator[int]:
    """Serve AuthService on `host:port` (0: any free port); yields the bound port."""
    store: SqlStore | None = None
    if engine is None:
        store = SqlStore(
            settings.database.url.get_secret_value(), **settings.database.store_options()
        )
        await store.start()
        engine = store.engine
    service = AuthService(AuthRepository(engine), settings.auth)
    # One process per port: without this, a second server would silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=[ErrorInterceptor()])
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(service), server)
    add_standard_services(server, auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("auth_service.started", port=bound)
    try:
        yield bound
    finally:
        await server.stop(grace=2)
        service.close()
        if store is not None:
            await store.close()
