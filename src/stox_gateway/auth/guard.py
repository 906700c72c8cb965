"""Who is calling, and may they? One place for HTTP, WebSocket, gRPC and AMQP alike.

The gateway verifies access tokens itself, with the key it shares with the auth service (one
pinned algorithm, `aud`, `iss`, `exp`): no round trip per request. Services authenticate their
reports with the service token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.auth.tokens import TokenIssuer
from stox_gateway.config.settings import AuthSettings


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str | None  # None: anonymous (only while auth is not required)


class Guard:
    def __init__(
        self, settings: AuthSettings, *, on_service_refused: Callable[[], object] | None = None
    ) -> None:
        self.tokens = TokenIssuer(settings)
        # A worker with the wrong token is a deployment fault operators must see on a graph.
        self._on_service_refused = on_service_refused
        self.required = settings.required
        self._service_token = (
            settings.service_token.get_secret_value() if settings.service_token else None
        )

    @property
    def service_token(self) -> str | None:
        return self._service_token

    def caller(self, token: str | None) -> Caller:
        """The caller of a request; a present but bad token is refused even when optional."""
        if token:
            return Caller(self.tokens.verify(token).user_id)
        if self.required:
            raise Unauthenticated("a valid access token is required (Authorization: Bearer …)")
        return Caller(None)

    def owner_filter(self, caller: Caller) -> str | None:
        """Whose workflows the caller may see: their own when auth is on, all when off."""
        return caller.user_id if self.required else None

    def may_see(self, caller: Caller, owner: str | None) -> bool:
        return not self.required or (caller.user_id is not None and caller.user_id == owner)

    def check_service(self, presented: str | None) -> None:
        """Refuse a report without the service token, when one is configured."""
        if self._service_token is None:
            return
        if not presented or not hmac.compare_digest(
            presented.encode(), self._service_token.encode()
        ):
            if self._on_service_refused is not None:
                self._on_service_refused()
            raise Unauthenticated("a valid service token is required (X-Service-Token)")


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
