"""Contract fuzzing: schemathesis against the gateway's own `/openapi.json`, on a real server.

The gateway runs under uvicorn on 127.0.0.1 (no embedded services, so nothing moves behind
the test's back) in a thread of its own with its own event loop: schemathesis calls are
synchronous (`requests`), so the server cannot share the test's loop.

Every generated request (positive and negative data, the examples, coverage and fuzzing
phases) must get:

- no 5xx                               `not_a_server_error`
- a status code the operation documents  `status_code_conformance`
- a body that matches the documented schema for that status  `response_schema_conformance`
- a documented content type              `content_type_conformance`, and JSON in every case

Bounded and reproducible: a fixed seed, derandomized Hypothesis, no example database, at most
`MAX_EXAMPLES` fuzzed examples per operation.

Not covered here: `/ws` is a WebSocket route, which OpenAPI does not describe (it is not in
`/openapi.json`), so there is nothing for schemathesis to generate; tests/api covers it.
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
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stox_gateway.api.app import create_app
from tests.support import RunningGateway, make_settings, running_gateway

MAX_EXAMPLES = 30
SEED = 20261125
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


@contextlib.contextmanager
def gateway_in_thread(tmp_path: Path) -> Iterator[RunningGateway]:
    """`running_gateway` on an event loop in a thread of its own; stopped on exit."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        box["loop"] = asyncio.get_running_loop()
        settings_ = make_settings(tmp_path, workers={"embedded": False})
        async with running_gateway(settings_) as gateway:
            box["gateway"] = gateway
            started.set()
            await stop.wait()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # surfaced in the test thread
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="gateway-under-fuzz", daemon=True)
    thread.start()
    started.wait(30)
    if "gateway" not in box:
        thread.join(5)
        raise RuntimeError("the gateway did not start") from box.get("error")
    try:
        yield box["gateway"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        assert not thread.is_alive(), "the gateway did not stop"
        if "error" in box:
            raise box["error"]


def _own_openapi() -> dict[str, Any]:
    """The document the gateway serves at `/openapi.json` (no I/O: building the app is pure)."""
    app = create_app(make_settings(Path(tempfile.gettempdir()), workers={"embedded": False}))
    return app.openapi()


# Loaded at import, from the app itself: `schemathesis.pytest.from_fixture` (the lazy loader that
# would fetch it from the running server) reads `request.node._nodeid`, which pytest 9 no longer
# has. `test_fuzzed_schema_is_the_served_one` proves the two documents are the same.
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


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real gateway on 127.0.0.1 for every operation of this module."""
    with gateway_in_thread(tmp_path_factory.mktemp("fuzz")) as gateway:
        yield gateway.url


def test_fuzzed_schema_is_the_served_one(gateway_url: str) -> None:
    served = requests.get(f"{gateway_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == OPENAPI


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
    media = response.headers.get("content-type", [""])
    media_type = (media[0] if isinstance(media, list) else media).split(";")[0].strip()
    assert media_type == "application/json", (
        f"{case.method} {case.formatted_path} answered {response.status_code} "
        f"with Content-Type {media_type!r}, not JSON"
    )
