"""Item 3: tokens cannot be forged with the public default secret, nor minted to last forever."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.auth.tokens import TokenIssuer
from stox_gateway.config.safety import InsecureSettings, enforce
from stox_gateway.config.settings import DEV_JWT_SECRET, AuthSettings, load_settings

LONG_SECRET = "s" * 40


@pytest.mark.parametrize("secret", [DEV_JWT_SECRET, "short-but-not-default", "é" * 15])
@pytest.mark.parametrize("environment", ["development", "test"])
def test_auth_on_refuses_the_default_or_a_short_secret_in_any_environment(
    tmp_path: Path, secret: str, environment: str
) -> None:
    settings = load_settings(
        server={"environment": environment},
        auth={"required": True, "service_token": "t" * 20, "jwt_secret": secret},
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"},
    )
    with pytest.raises(InsecureSettings, match=r"auth\.jwt_secret") as refused:
        enforce(settings)
    assert secret not in str(refused.value)


def test_auth_on_with_a_long_secret_starts(tmp_path: Path) -> None:
    settings = load_settings(
        auth={"required": True, "service_token": "t" * 20, "jwt_secret": LONG_SECRET}
    )
    assert enforce(settings).auth.required is True


def test_the_kid_reveals_nothing_about_the_secret() -> None:
    tokens = TokenIssuer(AuthSettings(jwt_secret=DEV_JWT_SECRET))  # type: ignore[arg-type]
    kid = jwt.get_unverified_header(tokens.issue("u1", "x"))["kid"]
    assert kid != hashlib.sha256(DEV_JWT_SECRET.encode()).hexdigest()[:16]
    assert kid == AuthSettings().key_id


def test_the_kid_comes_from_the_configured_key_id() -> None:
    tokens = TokenIssuer(AuthSettings(jwt_secret=LONG_SECRET, key_id="2026-12"))  # type: ignore[arg-type]
    assert jwt.get_unverified_header(tokens.issue("u1", "x"))["kid"] == "2026-12"


def test_a_token_living_longer_than_the_maximum_lifetime_is_refused() -> None:
    settings = AuthSettings(jwt_secret=LONG_SECRET)  # type: ignore[arg-type]
    tokens = TokenIssuer(settings)
    now = datetime.now(UTC)
    claims = {
        "sub": "u1",
        "aud": settings.audience,
        "iss": settings.issuer,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(days=3650)).timestamp()),
    }
    forged = jwt.encode(claims, LONG_SECRET, algorithm="HS256", headers={"kid": tokens.kid})
    with pytest.raises(Unauthenticated, match="lifetime"):
        tokens.verify(forged)
    assert tokens.verify(tokens.issue("u1", "x")).user_id == "u1"


def test_a_ttl_beyond_the_maximum_lifetime_is_refused_at_start() -> None:
    settings = load_settings(auth={"access_token_ttl": "2h", "max_token_lifetime": "1h"})
    with pytest.raises(InsecureSettings, match="max_token_lifetime"):
        enforce(settings)
