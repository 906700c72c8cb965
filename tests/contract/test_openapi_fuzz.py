"""Contract fuzzing: schemathesis against the gateway's own `/openapi.json`, on a real server.

The gateway runs under uvicorn on 127.0.0.1 (no embedded services, so nothing moves behind
the test's back) in a thread with an event loop of its own: schemathesis calls are
synchronous (`requests`), so the server cannot share a loop with the test.

Every generated request (positive and negative data; schemathesis's examples, coverage and
fuzzing phases, which include the methods an operation does not have) must get:

- no 5xx                                               `not_a_server_error`
- a status code the operation documents                `status_code_conformance`
- a body that matches the documented schema for it     `response_schema_conformance`
- a documented content type                            `content_type_conformance`
- and that content type is JSON, for errors too (README: "Every error is JSON")

Random ids only ever reach the 404 branch, so the gateway is seeded first (a user, and
workflows that are processing, failed, completed and cancelled) and schemathesis hooks swap
the real ids and credentials into some of the generated requests: status 200, cancel and retry
200/202/409, step-completed 200/409, login/refresh/profile/validate 200 are all exercised.

Bounded and reproducible: a fixed seed, derandomized Hypothesis, no example database, at most
`MAX_EXAMPLES` fuzzed examples per operation (about 20 s for the 12 operations).

Not fuzzed: `/ws`, a WebSocket route, which OpenAPI cannot describe and FastAPI leaves out of
`/openapi.json`; tests/api/test_websocket.py covers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stox_gateway.api.app import create_app
from tests.support import RunningGateway, make_settings, running_gateway

MAX_EXAMPLES = 25
SEED = 20261125
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
PASSWORD = "correct horse 42"
PRODUCT = {"name": "Fuzz Product", "images": ["image1.jpg"], "price": 9.5}


def _own_openapi() -> dict[str, Any]:
    """The document the gateway serves at `/openapi.json` (building the app does no I/O)."""
    app = create_app(make_settings(Path(tempfile.gettempdir()), workers={"embedded": False}))
    return app.openapi()


# Loaded at import from the app itself, because `schemathesis.pytest.from_fixture` (the lazy
# loader that could fetch it from the running server) reads `request.node._nodeid`, which
# pytest 9 no longer has (AttributeError in schemathesis/pytest/lazy.py, 4.32.5).
# `test_fuzzed_schema_is_the_served_one` proves the server serves exactly this document.
OPENAPI = _own_openapi()
schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "request-timeout": 10,
        }
    ),
)

# -- the running gateway -----------------------------------------------------------------------


@contextlib.contextmanager
def gateway_in_thread(tmp_path: Path) -> Iterator[RunningGateway]:
    """`running_gateway` on an event loop in a thread of its own; stopped on exit."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"], box["loop"] = stop, asyncio.get_running_loop()
        async with running_gateway(make_settings(tmp_path, workers={"embedded": False})) as gw:
            box["gateway"] = gw
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="gateway-under-fuzz", daemon=True)
    thread.start()
    started.wait(60)
    if "gateway" not in box:
        thread.join(5)
        raise RuntimeError("the gateway did not start") from box.get("error")
    try:
        yield box["gateway"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "the gateway did not stop within 30 s"
        if "error" in box:
            raise box["error"]


# -- real data for the hooks ---------------------------------------------------------------

# Filled by the `gateway_url` fixture before any example is drawn; read by the hooks at draw
# time. Lists of tuples keep `sampled_from` deterministic in shape (the uuids differ per run).
KNOWN: dict[str, list[Any]] = {
    "workflows": [],  # workflow ids: processing, failed, completed, cancelled
    "steps": [],  # (workflow_id, step_id, step_type)
    "access_tokens": [],
    "refresh_tokens": [],
}


def _checked(url: str, method: str, path: str, **parts: Any) -> Any:
    """One request of the seeding, validated by the same checks as the fuzzed ones."""
    case = schema[path][method].Case(**parts)
    response = case.call_and_validate(base_url=url, checks=CHECKS)
    assert response.status_code < 300, f"seeding {method} {path}: {response.status_code}"
    return response.json()


def _seed(url: str) -> None:
    """A user, and one workflow in each state, made through the public API.

    Each request is itself checked, so the happy paths (201, 202, 200 with real data) are
    covered by the contract checks whatever the fuzzer happens to draw.
    """
    for kind in KNOWN.values():
        kind.clear()
    user = {"email": "fuzz@example.com", "password": PASSWORD}
    session = _checked(
        url, "POST", "/api/v1/auth/register", body={**user, "first_name": "F", "last_name": "Z"}
    )
    login = _checked(url, "POST", "/api/v1/auth/login", body=user)
    refreshed = _checked(
        url, "POST", "/api/v1/auth/refresh", body={"refresh_token": login["refresh_token"]}
    )
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    _checked(url, "GET", "/api/v1/auth/profile", headers=bearer)
    _checked(url, "POST", "/api/v1/auth/validate", body={"token": session["access_token"]})
    KNOWN["access_tokens"] += [session["access_token"], refreshed["access_token"]]
    KNOWN["refresh_tokens"] += [session["refresh_token"], refreshed["refresh_token"]]

    views = []
    for _ in range(4):
        accepted = _checked(url, "POST", "/api/v1/workflow/upload", body=PRODUCT)
        view = _checked(
            url, "GET", "/api/v1/workflow/status", query={"workflow_id": accepted["workflow_id"]}
        )
        views.append(view)
        KNOWN["workflows"].append(view["id"])
        KNOWN["steps"] += [(view["id"], s["id"], s["type"]) for s in view["steps"]]

    def report(view: dict[str, Any], index: int, **outcome: Any) -> None:
        step = view["steps"][index]
        body = {"workflow_id": view["id"], "step_id": step["id"], "step_type": step["type"]}
        _checked(url, "POST", "/api/v1/workflow/step-completed", body={**body, **outcome})

    _processing, failed, completed, cancelled = views
    report(failed, 0, success=False, error="boom", retryable=False)
    report(failed, 0, success=False, error="boom", retryable=False)  # a repeat: 200, no-op
    for index in range(3):
        report(completed, index, success=True, result={"n": index})
    _checked(
        url,
        "POST",
        "/api/v1/workflow/{workflow_id}/cancel",
        path_parameters={"workflow_id": cancelled["id"]},
    )
    _checked(url, "GET", "/api/v1/workflow/list", query={"limit": 10})


def _maybe(value: Any, replacement: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Keep the generated value, or (twice as often) take a real one instead."""
    return st.one_of(st.just(value), replacement, replacement)


@schema.hook
def flatmap_path_parameters(
    ctx: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[Any]:
    if not path_parameters or "workflow_id" not in path_parameters or not KNOWN["workflows"]:
        return st.just(path_parameters)
    real = st.sampled_from(KNOWN["workflows"]).map(
        lambda wid: {**path_parameters, "workflow_id": wid}
    )
    return _maybe(path_parameters, real)


@schema.hook
def flatmap_query(ctx: schemathesis.HookContext, query: dict[str, Any]) -> st.SearchStrategy[Any]:
    if not isinstance(query, dict) or "workflow_id" not in query or not KNOWN["workflows"]:
        return st.just(query)
    real = st.sampled_from(KNOWN["workflows"]).map(lambda wid: {**query, "workflow_id": wid})
    return _maybe(query, real)


@schema.hook
def flatmap_headers(
    ctx: schemathesis.HookContext, headers: dict[str, Any]
) -> st.SearchStrategy[Any]:
    if not isinstance(headers, dict) or "authorization" not in headers:
        return st.just(headers)
    if not KNOWN["access_tokens"]:
        return st.just(headers)
    real = st.sampled_from(KNOWN["access_tokens"]).map(
        lambda token: {**headers, "authorization": f"Bearer {token}"}
    )
    return _maybe(headers, real)


@schema.hook
def flatmap_body(ctx: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    path = ctx.operation.path if ctx.operation else ""
    if not isinstance(body, dict):
        return st.just(body)
    if path == "/api/v1/workflow/step-completed" and KNOWN["steps"]:
        attempts = st.sampled_from([None, 1, 2, 3, 4])

        def with_step(drawn: tuple[tuple[str, str, str], int | None]) -> dict[str, Any]:
            (workflow_id, step_id, step_type), attempt = drawn
            real = {**body, "workflow_id": workflow_id, "step_id": step_id}
            real["step_type"] = step_type
            if attempt is None:
                real.pop("attempt", None)
            else:
                real["attempt"] = attempt
            return real

        return _maybe(body, st.tuples(st.sampled_from(KNOWN["steps"]), attempts).map(with_step))
    if path == "/api/v1/auth/login":
        return _maybe(body, st.just({**body, "email": "fuzz@example.com", "password": PASSWORD}))
    if path == "/api/v1/auth/refresh" and KNOWN["refresh_tokens"]:
        real = st.sampled_from(KNOWN["refresh_tokens"]).map(
            lambda token: {**body, "refresh_token": token}
        )
        return _maybe(body, real)
    if path == "/api/v1/auth/validate" and KNOWN["access_tokens"]:
        real = st.sampled_from(KNOWN["access_tokens"]).map(lambda token: {**body, "token": token})
        return _maybe(body, real)
    return st.just(body)


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real, seeded gateway on 127.0.0.1 for every operation of this module."""
    with gateway_in_thread(tmp_path_factory.mktemp("fuzz")) as gateway:
        _seed(gateway.url)
        yield gateway.url


# -- the tests -------------------------------------------------------------------------------


def test_fuzzed_schema_is_the_served_one(gateway_url: str) -> None:
    served = requests.get(f"{gateway_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == OPENAPI
    assert "/ws" not in OPENAPI["paths"]  # the one route not fuzzed, see the module docstring


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_honours_its_contract(case: schemathesis.Case, gateway_url: str) -> None:
    response = case.call_and_validate(base_url=gateway_url, checks=CHECKS)
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    media_type = content_type.split(";")[0].strip()
    assert media_type == "application/json", (
        f"{case.method} {case.formatted_path} answered {response.status_code} "
        f"with Content-Type {media_type!r}, not JSON"
    )
