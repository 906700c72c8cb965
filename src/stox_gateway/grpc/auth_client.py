"""The gateway's client of AuthService: deadlines on every call; its errors become ours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from stox_gateway.errors import from_grpc
from stox_gateway.grpc.errors import error_code
from stox_gateway.grpc.generated.stox.v1 import auth_pb2, auth_pb2_grpc


@dataclass(frozen=True, slots=True)
class UserView:
    id: str
    email: str
    first_name: str
    last_name: str
    created_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "created_at": self.created_at,
        }


class AuthClient:
    def __init__(self, target: str, *, timeout: float = 5.0) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            name = exc.code().name
            error = from_grpc(name, exc.details() or name)
            error.code = error_code(exc)
            raise error from exc

    async def register(
        self, email: str, password: str, first_name: str, last_name: str
    ) -> dict[str, Any]:
        request = auth_pb2.RegisterRequest(
            email=email, password=password, first_name=first_name, last_name=last_name
        )
        return _session(await self._call(self._stub.Register, request))

    async def login(self, email: str, password: str) -> dict[str, Any]:
        request = auth_pb2.LoginRequest(email=email, password=password)
        return _session(await self._call(self._stub.Login, request))

    async def validate(self, token: str) -> dict[str, Any]:
        answer = await self._call(
            self._stub.ValidateToken, auth_pb2.ValidateTokenRequest(token=token)
        )
        return {
            "valid": answer.valid,
            "user_id": answer.user_id or None,
            "email": answer.email or None,
            "expires_at": answer.expires_at or None,
        }

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        request = auth_pb2.RefreshTokenRequest(refresh_token=refresh_token)
        return _session(await self._call(self._stub.RefreshToken, request))

    async def profile(self, access_token: str) -> dict[str, Any]:
        request = auth_pb2.GetProfileRequest(access_token=access_token)
        return _user(await self._call(self._stub.GetProfile, request)).to_json()


def _user(message: Any) -> UserView:
    return UserView(
        message.id, message.email, message.first_name, message.last_name, message.created_at
    )


def _session(message: Any) -> dict[str, Any]:
    return {
        "user": _user(message.user).to_json(),
        "access_token": message.access_token,
        "refresh_token": message.refresh_token,
        "expires_in": message.expires_in,
        "token_type": message.token_type,
    }
