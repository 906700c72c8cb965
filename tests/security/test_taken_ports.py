"""Item 14: a taken port is one line naming the port and the setting; the demo picks free ports
and keeps its output to the progress and the summary."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO


@contextlib.contextmanager
def listening(port: int = 0) -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield int(holder.getsockname()[1])


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stox_gateway", *args],
        env={"PATH": "/usr/bin:/bin", "STOX_SERVER__HOST": "127.0.0.1", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("taken", "setting"), [("http", "STOX_SERVER__PORT"), ("grpc", "STOX_GRPC__PORT")]
)
def test_serve_with_a_taken_port_says_which_and_what_to_set(
    tmp_path: Path, taken: str, setting: str
) -> None:
    with listening() as port:
        env = {
            "STOX_SERVER__PORT": str(port) if taken == "http" else "0",
            "STOX_GRPC__PORT": str(port) if taken == "grpc" else "0",
            "STOX_GRPC__HOST": "127.0.0.1",
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        }
        answer = run(["serve"], env, tmp_path)
    assert answer.returncode == 2, answer.stderr[-3000:]
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1, answer.stderr
    assert lines[0].startswith(f"error: port {port} is in use; set {setting}")
    assert "Traceback" not in answer.stderr


def test_the_demo_runs_while_another_gateway_holds_the_grpc_port(tmp_path: Path) -> None:
    try:
        holder = listening(50052)
        holder.__enter__()
    except OSError:
        holder = None  # someone holds it already, which is the case under test anyway
    try:
        answer = run(["demo", "--count", "2", "--timeout", "60"], {}, REPO)
    finally:
        if holder is not None:
            holder.__exit__(None, None, None)
    assert answer.returncode == 0, (answer.stdout + answer.stderr)[-3000:]
    assert "2 workflows in" in answer.stdout
    assert "debug" not in (answer.stdout + answer.stderr).lower()
    assert len((answer.stdout + answer.stderr).splitlines()) < 30
