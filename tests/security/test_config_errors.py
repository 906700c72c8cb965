"""Item 11: list settings accept a comma-separated environment value; every configuration error
is one readable line naming the key, without a traceback and without the secret it refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stox_gateway.config.settings import load_settings


def serve(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", "serve"],
        env={"PATH": "/usr/bin:/bin", "STOX_GRPC__PORT": "0", "STOX_SERVER__PORT": "0", **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://x", ["http://x"]),
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ('["https://a.example"]', ["https://a.example"]),
    ],
)
def test_a_list_setting_from_the_environment_is_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("STOX_WEBSOCKET__ALLOWED_ORIGINS", value)
    monkeypatch.setenv("STOX_SERVER__CORS_ORIGINS", value)
    settings = load_settings()
    assert settings.websocket.allowed_origins == expected
    assert settings.server.cors_origins == expected


@pytest.mark.parametrize(
    ("env", "key", "secret"),
    [
        (
            {"STOX_EVENT_BUS": "rabbitmq", "STOX_RABBITMQ__URL": "amqp//guest:hunter2pw@h:5672/"},
            "rabbitmq.url",
            "hunter2pw",
        ),
        ({"STOX_DATABASE__POOL_SIZE": "many"}, "database.pool_size", None),
        ({"STOX_WORKFLOW__STEPS": "not json"}, "workflow", None),
        ({"STOX_SERVER__PORT": "99999"}, "server.port", None),
    ],
)
def test_a_configuration_error_is_one_line_naming_the_key(
    tmp_path: Path, env: dict[str, str], key: str, secret: str | None
) -> None:
    answer = serve(tmp_path, env)
    assert answer.returncode == 2, answer.stderr[-2000:]
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1, answer.stderr
    assert key in lines[0]
    assert "Traceback" not in answer.stderr
    if secret:
        assert secret not in answer.stderr + answer.stdout


def test_aio_pika_reconnect_lines_lose_the_url_password() -> None:
    from stox_gateway.observability.logging import redact

    line = "Reconnect attempt failed amqp://guest:hunter2pw@10.0.0.5:5672/ due to ValueError"
    assert (
        redact(line) == "Reconnect attempt failed amqp://guest:***@10.0.0.5:5672/ due to ValueError"
    )
