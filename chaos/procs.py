"""Child processes of the chaos run: started in sessions of their own, always stopped.

Every child is remembered in `_LIVE` until it has been reaped; `stop_all()` runs from the
harness's `finally`, from `atexit` and from the SIGTERM handler of `chaos.run`, so an error or
Ctrl-C leaves no process behind. Only processes this module started are ever signalled, each by
its own pid (process group = pid, since each child leads a session of its own).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

_LIVE: dict[int, Child] = {}


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def kill(self) -> None:
        """SIGKILL (the fault), then reap."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._forget()

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (graceful), SIGKILL to the group after `grace` seconds; the exit status."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
        self._forget()
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        code = self.popen.poll()
        if code is not None:
            self._forget()
        return code

    def _forget(self) -> None:
        if self.popen.poll() is not None:
            _LIVE.pop(self.pid, None)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
) -> Child:
    """Start `argv` (after the venv's python), output to `log_path`.

    `cwd` defaults to the log's folder, so no `config.yaml` or `stox.db` of the repository's
    working directory is picked up by accident; the repository is on PYTHONPATH for `chaos.*`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [PYTHON, *argv],
            cwd=cwd or log_path.parent,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = Child(name, list(argv), dict(env), log_path, popen)
    _LIVE[popen.pid] = child
    return child


def live() -> list[Child]:
    return [c for c in _LIVE.values() if c.alive()]


def stop_all(grace: float = 10.0) -> None:
    """Stop every child still running: SIGTERM to all, then SIGKILL what is left."""
    children = list(_LIVE.values())
    for child in children:
        if child.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(5)
        _LIVE.pop(child.pid, None)


atexit.register(stop_all, 3.0)
