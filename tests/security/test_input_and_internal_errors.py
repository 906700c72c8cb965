"""Bad input is refused at the door, and what goes wrong inside never leaves (issue 14 item 7).

On PostgreSQL a NUL in a product, a name or a report used to reach the database, and the
answer was a 500 (HTTP) or UNKNOWN (gRPC) carrying the SQL and its parameters. Control
characters are now a 422 naming the field; anything unexpected is a generic answer with the
correlation id, its details only in the log; a `since` beyond 64 bits is a 400, not a dropped
WebSocket.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
import websockets
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.exceptions import InvalidStatus

from stox_gateway import codec
from stox_gateway.auth.server import auth_server
from stox_gateway.errors import StoxError
from stox_gateway.grpc.generated.stox.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from tests.support import (
    POSTGRES_URL,
    RunningGateway,
    capture_logs,
    make_settings,
    require_server,
    running_gateway,
)

PASSWORD = "correct horse 42"
# What a leaked database error looks like; none of it may reach a client.
LEAKS = ("INSERT", "SELECT", "UPDATE", "asyncpg", "sqlalchemy", "Traceback", "$argon2")


def assert_no_leak(text: str) -> None:
    for word in LEAKS:
        assert word not in text, f"{word!r} leaked: {text[:300]}"


@pytest.fixture
async def on_postgres(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway on PostgreSQL (where a NUL is a database error), in a schema of its own."""
    require_server(5432, "PostgreSQL")
    schema = f"stox_sec_{uuid.uuid4().hex[:10]}"
    settings = make_settings(
        tmp_path,
        database={"url": POSTGRES_URL, "schema_name": schema},
        workers={"embedded": False},
    )
    try:
        async with running_gateway(settings) as running:
            yield running
    finally:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, workers={"embedded": False})) as running:
        yield running


async def upload(http: httpx.AsyncClient, **product: Any) -> str:
    answer = await http.post("/api/v1/workflow/upload", json={"name": "Lamp", **product})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["workflow_id"])


async def first_step(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/workflow/status", params={"workflow_id": workflow_id})
    step: dict[str, Any] = answer.json()["steps"][0]
    return step


def refused_field(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    assert_no_leak(answer.text)
    body = answer.json()["error"]
    assert body["code"] == "validation_error"
    return str(body["details"][0]["field"])


@pytest.mark.postgres
async def test_control_characters_in_a_product_are_refused_with_422(
    on_postgres: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=on_postgres.url) as http:
        upload_path = "/api/v1/workflow/upload"
        assert refused_field(await http.post(upload_path, json={"name": "Lamp\x00"})) == "name"
        description = {"name": "Lamp", "description": "warm\x00light"}
        assert refused_field(await http.post(upload_path, json=description)) == "description"
        category = {"name": "Lamp", "category": "Home\x1b[31m"}
        assert refused_field(await http.post(upload_path, json=category)) == "category"
        image = {"name": "Lamp", "images": ["https://example.com/a\x00.png"]}
        assert refused_field(await http.post(upload_path, json=image)) == "images.0"
        # Text that may span lines keeps its tabs and line breaks.
        await upload(http, description="warm\tlight\r\nfor the desk")


@pytest.mark.postgres
async def test_control_characters_in_a_registration_are_refused_with_422(
    on_postgres: RunningGateway,
) -> None:
    user = {"email": "ada@example.com", "password": PASSWORD, "first_name": "Ada"}
    async with httpx.AsyncClient(base_url=on_postgres.url) as http:
        nul_name = {**user, "last_name": "Love\x00lace"}
        answer = await http.post("/api/v1/auth/register", json=nul_name)
        assert refused_field(answer) == "last_name"
        nul_login = {"email": "ada\x00@example.com", "password": PASSWORD}
        assert refused_field(await http.post("/api/v1/auth/login", json=nul_login)) == "email"
        answer = await http.post("/api/v1/auth/register", json={**user, "last_name": "Lovelace"})
        assert answer.status_code == 201, answer.text


@pytest.mark.postgres
async def test_control_characters_in_a_report_are_refused_on_http_and_grpc(
    on_postgres: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=on_postgres.url) as http:
        workflow_id = await upload(http)
        step = await first_step(http, workflow_id)
        report = {"workflow_id": workflow_id, "step_id": step["id"], "step_type": step["type"]}
        path = "/api/v1/workflow/step-completed"
        failed = {**report, "success": False, "error": "broke\x00"}
        assert refused_field(await http.post(path, json=failed)) == "error"
        done = {**report, "success": True, "result": {"tags": ["ok", "bad\x00"]}}
        assert refused_field(await http.post(path, json=done)) == "result"
        nul_id = "/api/v1/workflow/status?workflow_id=%00"
        answer = await http.get(nul_id)
        assert answer.status_code == 400, answer.text
        assert_no_leak(answer.text)

    target = f"127.0.0.1:{on_postgres.runtime.grpc_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        request = workflow_pb2.CompleteStepRequest(**report, success=False, error="broke\x00")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CompleteStep(request)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert_no_leak(refused.value.details() or "")
    async with httpx.AsyncClient(base_url=on_postgres.url) as http:
        assert (await first_step(http, workflow_id))["status"] == "running"  # nothing recorded


@pytest.mark.postgres
async def test_the_auth_service_answers_an_unexpected_error_without_its_text(
    on_postgres: RunningGateway,
) -> None:
    """A caller of AuthService itself (not through the gateway's checks) gets INTERNAL with a
    correlation id, not the SQL and the password hash."""
    runtime = on_postgres.runtime
    serving = auth_server(runtime.settings, host="127.0.0.1", port=0, engine=runtime.store.engine)
    async with serving as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.RegisterRequest(
            email="nul@example.com", password=PASSWORD, first_name="N\x00", last_name="Ul"
        )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Register(request, metadata=(("x-correlation-id", "sec-test-7"),))
    assert failed.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert_no_leak(failed.value.details() or "")
    if failed.value.code() is grpc.StatusCode.INTERNAL:
        assert "sec-test-7" in (failed.value.details() or "")


def break_the_engine(
    gateway: RunningGateway, secret: str, kind: type[Exception] = RuntimeError
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise kind(f"SELECT * FROM workflows -- {secret}")

    gateway.runtime.engine.get = broken  # type: ignore[method-assign]


@pytest.mark.parametrize("kind", [RuntimeError, StoxError], ids=["foreign", "our-root"])
async def test_an_unexpected_error_is_a_generic_500_with_the_correlation_id(
    gateway: RunningGateway, kind: type[Exception]
) -> None:
    break_the_engine(gateway, "s3cr3t", kind)
    with capture_logs() as logs:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            answer = await http.get(
                "/api/v1/workflow/status",
                params={"workflow_id": "any"},
                headers={"X-Correlation-ID": "corr-500"},
            )
    assert answer.status_code == 500
    assert "s3cr3t" not in answer.text
    assert_no_leak(answer.text)
    error = answer.json()["error"]
    assert error["code"] == "internal"
    assert error["correlation_id"] == "corr-500"
    assert answer.headers["x-correlation-id"] == "corr-500"
    logged = [e for e in logs if e.get("correlation_id") == "corr-500" and e.get("exc_info")]
    assert logged, "the details go to the log, under the correlation id"


async def test_an_unexpected_error_is_grpc_internal_with_the_correlation_id(
    gateway: RunningGateway,
) -> None:
    break_the_engine(gateway, "s3cr3t")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetWorkflow(
                workflow_pb2.GetWorkflowRequest(workflow_id="any"),
                metadata=(("x-correlation-id", "corr-grpc"),),
            )
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    details = failed.value.details() or ""
    assert "s3cr3t" not in details
    assert_no_leak(details)
    assert "corr-grpc" in details


@pytest.mark.parametrize("since", [str(2**63), "9" * 40, "²"])
async def test_a_since_out_of_range_is_refused_with_400(
    gateway: RunningGateway, since: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        workflow_id = await upload(http)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{gateway.ws_url}?workflow_id={workflow_id}&since={since}"):
            pass
    assert refused.value.response.status_code == 400
    assert codec.loads(refused.value.response.body)["error"]["code"] == "invalid_parameter"


async def test_the_largest_since_is_accepted(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        workflow_id = await upload(http)
    url = f"{gateway.ws_url}?workflow_id={workflow_id}&since={2**63 - 1}"
    async with websockets.connect(url) as ws:
        await ws.send("")  # nothing to replay; the socket stays open
        assert ws.state is websockets.protocol.State.OPEN
