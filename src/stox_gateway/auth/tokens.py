"""Access tokens: short-lived JWTs with `kid`, `aud`, `iss`, `exp`, one pinned algorithm."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.config.settings import AuthSettings


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    email: str
    expires_at: datetime


class TokenIssuer:
    def __init__(self, settings: AuthSettings) -> None:
        self._key = settings.jwt_secret.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._audience = settings.audience
        self._issuer = settings.issuer
        self.ttl: timedelta = settings.access_token_ttl
        self._max_lifetime = int(settings.max_token_lifetime.total_seconds())
        # A configured name, not derived from the secret: a hash of the key would let anyone
        # holding a token check a guessed (or the public default) secret offline.
        self.kid = settings.key_id

    def issue(self, user_id: str, email: str, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        claims: dict[str, Any] = {
            "sub": user_id,
            "email": email,
            "aud": self._audience,
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers={"kid": self.kid})

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; `Unauthenticated` for anything else.

        Only the configured algorithm is accepted (never `none`, never another family),
        `exp`, `aud` and `iss` must be present and right, and `exp - iat` may not exceed
        `auth.max_token_lifetime` (a leaked key cannot mint tokens that last for years).
        """
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise Unauthenticated("token signed with an unknown key")
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        lifetime = int(claims["exp"]) - int(claims["iat"])
        if lifetime > self._max_lifetime:
            raise Unauthenticated("token lives longer than the maximum token lifetime")
        return AccessClaims(
            user_id=str(claims["sub"]),
            email=str(claims.get("email", "")),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
