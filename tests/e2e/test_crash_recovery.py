"""A gateway killed between commit and publish, or between publish and marking sent, loses
nothing and applies nothing twice once it is back (crash points of `STOX_CRASH_POINT`)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from tests.support import Process, free_port, wait_healthy

pytestmark = pytest.mark.e2e


def gateway(tmp_path: Path, name: str, port: int, **env: str) -> Process:
    process = Process(
        ["serve"],
        {
            "STOX_SERVER__PORT": str(port),
            "STOX_SERVER__HOST": "127.0.0.1",
            "STOX_GRPC__PORT": "0",
            "STOX_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'stox.db'}",
            "STOX_WORKERS__NOOP": "true",
            **env,
        },
        tmp_path / f"{name}.log",
    )
    wait_healthy(f"http://127.0.0.1:{port}", process)
    return process


def wait_completed(url: str, workflow_id: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/api/v1/workflow/status", params={"workflow_id": workflow_id})
        if status.status_code == 200 and status.json()["status"] == "completed":
            return dict(status.json())
        time.sleep(0.1)
    raise AssertionError(f"{workflow_id} did not complete")


@pytest.mark.parametrize("point", ["after_commit_before_publish", "after_publish_before_mark"])
def test_a_crash_at_a_crash_point_loses_no_workflow(tmp_path: Path, point: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    doomed = gateway(tmp_path, "doomed", port, STOX_CRASH_POINT=point)
    # Before the answer (commit, then crash) or just after it (the relay publishes, then crash).
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/api/v1/workflow/upload", json={"name": "Crash"}, timeout=10)
    doomed.popen.wait(10)
    assert doomed.popen.returncode == 97, doomed.log()[-2000:]

    revived = gateway(tmp_path, "revived", port)
    try:
        listed = httpx.get(f"{url}/api/v1/workflow/list").json()
        assert len(listed) == 1, "the committed workflow was lost"
        workflow = wait_completed(url, listed[0]["id"])
        steps = workflow["steps"]
        assert isinstance(steps, list)
        assert [s["attempts"] for s in steps] == [1, 1, 1]
        assert workflow["seq"] == 8  # no update applied twice
    finally:
        assert revived.stop(), revived.log()[-3000:]
