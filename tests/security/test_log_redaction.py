"""Item 5: no token reaches a log line, uvicorn's included, in a real gateway process."""

from __future__ import annotations

from pathlib import Path

import httpx
import websockets

from tests.support import start_gateway

ENV = {
    "STOX_AUTH__REQUIRED": "true",
    "STOX_AUTH__JWT_SECRET": "log-test-secret-" + "0123456789abcdef" * 2,
    "STOX_AUTH__SERVICE_TOKEN": "log-test-service-token-0123",
    "STOX_WORKERS__EMBEDDED": "false",
    "STOX_LOGGING__LEVEL": "DEBUG",
}


async def test_a_run_logs_no_token(tmp_path: Path) -> None:
    env = {**ENV, "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}"}
    process, url = start_gateway(tmp_path, "gateway", env)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            session = (
                await http.post(
                    "/api/v1/auth/register",
                    json={
                        "email": "log@example.com",
                        "password": "correct horse 42",
                        "first_name": "Ann",
                        "last_name": "Lee",
                    },
                )
            ).json()
            token, refresh = session["access_token"], session["refresh_token"]
            ws_url = url.replace("http://", "ws://") + f"/ws?token={token}"
            async with websockets.connect(ws_url) as ws:
                await ws.recv()
            await http.get(f"/api/v1/workflow/list?access_token={token}")
            await http.get(f"/api/v1/workflow/list?refresh_token={refresh}")
    finally:
        process.terminate()
    log = process.log()
    assert "/ws?" in log, "the WebSocket request line should be logged (redacted)"
    assert token not in log
    assert token.split(".")[2] not in log  # not even the signature
    assert refresh not in log


def test_redact_replaces_tokens_in_any_text() -> None:
    from stox_gateway.observability.logging import redact

    line = '127.0.0.1:5 - "WebSocket /ws?workflow_id=w&token=eyJa.b.c&x=1" [accepted]'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /ws?workflow_id=w&token=***&x=1" [accepted]'
    assert redact("GET /x?access_token=abc HTTP/1.1") == "GET /x?access_token=*** HTTP/1.1"
    assert redact("refresh_token%3Dabc") == "refresh_token%3D***"
    assert redact("Authorization: Bearer eyJabc") == "Authorization: Bearer ***"
    assert redact("nothing secret here") == "nothing secret here"
