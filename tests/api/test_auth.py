"""Auth over HTTP through the real gRPC AuthService; authorization of every route."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from stox_gateway import codec
from stox_gateway.auth.errors import Unauthenticated
from stox_gateway.auth.tokens import TokenIssuer
from stox_gateway.config.safety import InsecureSettings, enforce
from stox_gateway.config.settings import AuthSettings
from stox_gateway.runtime import Runtime
from tests.support import TEST_JWT_SECRET, RunningGateway, make_settings, running_gateway

SERVICE_TOKEN = "service-token-0123456789"
PASSWORD = "correct horse 42"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        auth={"required": True, "service_token": SERVICE_TOKEN, "jwt_secret": TEST_JWT_SECRET},
        websocket={"allowed_origins": ["https://shop.example"]},
    )
    async with running_gateway(settings) as gateway:
        yield gateway


@pytest.fixture
async def http(secured: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured.url, timeout=10) as client:
        yield client


async def register(http: httpx.AsyncClient, email: str) -> dict[str, Any]:
    answer = await http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "first_name": "Ann", "last_name": "Lee"},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


# -- the flows -------------------------------------------------------------------------------


async def test_register_login_validate_profile(http: httpx.AsyncClient) -> None:
    session = await register(http, "ann@example.com")
    assert session["token_type"] == "Bearer"
    assert session["user"]["email"] == "ann@example.com"
    assert session["expires_in"] == 900

    login = await http.post(
        "/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200
    valid = await http.post("/api/v1/auth/validate", json={"token": login.json()["access_token"]})
    assert valid.json()["valid"] is True
    assert valid.json()["user_id"] == session["user"]["id"]
    profile = await http.get("/api/v1/auth/profile", headers=bearer(login.json()))
    assert profile.json()["email"] == "ann@example.com"


async def test_register_lists_every_invalid_field(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/api/v1/auth/register",
        json={"email": "not-an-email", "password": "short", "first_name": " ", "last_name": ""},
    )
    assert answer.status_code == 422
    fields = {d["field"] for d in answer.json()["error"]["details"]}
    assert fields == {"email", "password", "first_name", "last_name"}


async def test_a_second_registration_of_an_email_is_409(http: httpx.AsyncClient) -> None:
    await register(http, "dup@example.com")
    again = await http.post(
        "/api/v1/auth/register",
        json={
            "email": "dup@example.com",
            "password": PASSWORD,
            "first_name": "A",
            "last_name": "B",
        },
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_exists"


async def test_a_wrong_password_is_401(http: httpx.AsyncClient) -> None:
    await register(http, "bob@example.com")
    answer = await http.post(
        "/api/v1/auth/login", json={"email": "bob@example.com", "password": "wrong one 1"}
    )
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(
    http: httpx.AsyncClient,
) -> None:
    first = await register(http, "eve@example.com")
    second = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]

    reused = await http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert "reused" in reused.json()["error"]["message"]
    # The thief's reuse also ends the legitimate successor.
    successor = await http.post(
        "/api/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}
    )
    assert successor.status_code == 401


async def test_profile_without_a_token_is_401(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/auth/profile")).status_code == 401


# -- tokens ----------------------------------------------------------------------------------


def issuer(**changes: Any) -> TokenIssuer:
    return TokenIssuer(AuthSettings(**changes))


def test_a_valid_token_verifies() -> None:
    tokens = issuer()
    claims = tokens.verify(tokens.issue("u1", "u1@example.com"))
    assert claims.user_id == "u1"
    assert jwt.get_unverified_header(tokens.issue("u1", "x"))["kid"] == tokens.kid


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), id="tampered"),
        pytest.param(
            lambda _t: issuer(access_token_ttl="1s").issue("u1", "x", now=_past()), id="expired"
        ),
        pytest.param(
            lambda _t: issuer(audience="someone-else").issue("u1", "x"), id="wrong-audience"
        ),
        pytest.param(lambda _t: issuer(issuer="impostor").issue("u1", "x"), id="wrong-issuer"),
        pytest.param(lambda _t: _unsigned(), id="alg-none"),
        pytest.param(
            lambda _t: issuer(jwt_secret="another-key-" * 4).issue("u1", "x"), id="other-key"
        ),
        pytest.param(lambda _t: "not.a.jwt", id="garbage"),
    ],
)
def test_forged_tokens_are_refused(forge: Any) -> None:
    tokens = issuer()
    with pytest.raises(Unauthenticated):
        tokens.verify(forge(tokens.issue("u1", "x")))


def _past() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(hours=1)


def _unsigned() -> str:
    tokens = issuer()
    claims = {
        "sub": "u1",
        "aud": "stox-gateway",
        "iss": "stox-auth",
        "iat": int(time.time()),
        "exp": int(time.time()) + 600,
    }
    return jwt.encode(claims, None, algorithm="none", headers={"kid": tokens.kid})


async def test_the_api_refuses_forged_tokens(http: httpx.AsyncClient) -> None:
    forged = issuer(audience="someone-else").issue("u1", "x")
    for token in (forged, _unsigned(), "garbage"):
        answer = await http.get(
            "/api/v1/workflow/list", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 401


# -- authorization ---------------------------------------------------------------------------


async def test_workflow_routes_need_a_token(http: httpx.AsyncClient) -> None:
    assert (await http.post("/api/v1/workflow/upload", json={"name": "x"})).status_code == 401
    assert (await http.get("/api/v1/workflow/list")).status_code == 401
    assert (
        await http.get("/api/v1/workflow/status", params={"workflow_id": "x"})
    ).status_code == 401


async def test_one_user_cannot_see_another_users_workflow(
    http: httpx.AsyncClient, secured: RunningGateway
) -> None:
    ann, bob = await register(http, "ann2@example.com"), await register(http, "bob2@example.com")
    upload = await http.post("/api/v1/workflow/upload", json={"name": "Ann's"}, headers=bearer(ann))
    workflow_id = upload.json()["workflow_id"]

    mine = await http.get(
        "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=bearer(ann)
    )
    assert mine.status_code == 200
    theirs = await http.get(
        "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=bearer(bob)
    )
    assert theirs.status_code == 404
    assert [
        w["id"] for w in (await http.get("/api/v1/workflow/list", headers=bearer(ann))).json()
    ] == [workflow_id]
    assert (await http.get("/api/v1/workflow/list", headers=bearer(bob))).json() == []

    ws = secured.ws_url
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            f"{ws}?workflow_id={workflow_id}&token={bob['access_token']}"
        ):
            pass
    assert refused.value.response.status_code == 404
    async with websockets.connect(f"{ws}?token={bob['access_token']}") as bobs_socket:
        snapshot = codec.loads(await bobs_socket.recv())
        assert snapshot["data"]["workflows"] == []
    async with websockets.connect(
        f"{ws}?workflow_id={workflow_id}&token={ann['access_token']}"
    ) as mine_ws:
        assert codec.loads(await mine_ws.recv())["data"]["id"] == workflow_id


async def test_the_websocket_checks_the_token_before_accepting(secured: RunningGateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(secured.ws_url):
            pass
    assert refused.value.response.status_code == 401


async def test_the_websocket_checks_the_origin(
    http: httpx.AsyncClient, secured: RunningGateway
) -> None:
    session = await register(http, "origin@example.com")
    url = f"{secured.ws_url}?token={session['access_token']}"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, origin="https://shop.example") as ws:  # type: ignore[arg-type]
        assert codec.loads(await ws.recv())["type"] == "snapshot"


async def test_a_completion_without_the_service_token_is_401_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    session = await register(http, "svc@example.com")
    upload = await http.post("/api/v1/workflow/upload", json={"name": "x"}, headers=bearer(session))
    workflow_id = upload.json()["workflow_id"]
    status = (
        await http.get(
            "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=bearer(session)
        )
    ).json()
    step = status["steps"][0]
    body = {
        "workflow_id": workflow_id,
        "step_id": step["id"],
        "step_type": step["type"],
        "success": True,
    }
    for headers in ({}, {"X-Service-Token": "wrong"}):
        refused = await http.post("/api/v1/workflow/step-completed", json=body, headers=headers)
        assert refused.status_code == 401
    after = (
        await http.get(
            "/api/v1/workflow/status", params={"workflow_id": workflow_id}, headers=bearer(session)
        )
    ).json()
    assert after == status
    accepted = await http.post(
        "/api/v1/workflow/step-completed", json=body, headers={"X-Service-Token": SERVICE_TOKEN}
    )
    assert accepted.status_code == 200


# -- production ------------------------------------------------------------------------------


def test_production_refuses_insecure_settings_and_says_what_to_change(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"environment": "production"})
    with pytest.raises(InsecureSettings) as refused:
        enforce(settings)
    message = str(refused.value)
    for key in ("auth.jwt_secret", "auth.service_token", "event_bus", "database.url"):
        assert key in message


def test_production_with_safe_settings_forces_auth_on(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        server={"environment": "production"},
        event_bus="rabbitmq",
        # A broker user of the gateways' own and signed updates (issue 14, item 8).
        rabbitmq={"url": "amqp://stox:s3cret@mq:5672/", "update_signing_key": "k" * 40},
        database={"url": "postgresql+asyncpg://stox@db/stox"},
        auth={"jwt_secret": "x" * 40, "service_token": "y" * 20, "required": False},
        media={"store": "database"},  # the local folder only with media.shared_path (issue 15)
    )
    assert enforce(settings).auth.required is True


async def test_a_gateway_in_production_does_not_start_with_defaults(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"environment": "production"})
    with pytest.raises(InsecureSettings):
        async with Runtime.open(settings):
            pass


def test_serve_in_production_exits_with_the_reasons(tmp_path: Path) -> None:
    import subprocess
    import sys

    answer = subprocess.run(
        [sys.executable, "-m", "stox_gateway", "serve"],
        env={"PATH": "/usr/bin:/bin", "STOX_SERVER__ENVIRONMENT": "production"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 2
    assert "auth.jwt_secret" in answer.stderr
