"""Child processes: start, measure (CPU, RSS) and always stop them.

Every child starts in a session of its own (its pid is its process group), so stopping it
also stops what it forked (Celery's and Dramatiq's pool processes) without touching anything
the harness did not start. Every started child is kept in `_LIVE`; `stop_all()` runs from the
harness's `finally` and from `atexit`, so Ctrl-C or an error leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable

_LIVE: dict[int, Child] = {}


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (10,000 WebSockets need as many descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _child_setup() -> None:  # runs in the child between fork and exec
    raise_nofile()


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The child and everything it forked (pool processes), alive right now."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the child's process group, SIGKILL after `grace` seconds."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # The group may outlive its leader (a pool process): kill what is left, then reap.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        _LIVE.pop(self.pid, None)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
) -> Child:
    """Start `argv` with the repository as cwd and on PYTHONPATH; output goes to a log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    # This checkout's gateway, whatever the venv's editable install points at (a worktree
    # benchmarked against another would otherwise run the other's code).
    path = os.pathsep.join((str(REPO / "src"), str(REPO)))
    full_env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = log_path.open("ab")
    try:
        popen = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=full_env,
            stdin=stdin,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_child_setup,  # only setrlimit: takes no lock
        )
    finally:
        log.close()
    child = Child(name, popen, log_path)
    _LIVE[popen.pid] = child
    return child


def stop_all(grace: float = 10.0) -> None:
    for child in list(_LIVE.values()):
        child.stop(grace)


atexit.register(stop_all, 3.0)


# -- measurements ------------------------------------------------------------------------


def cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the largest resident set the process has had (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def find_processes(names: Sequence[str]) -> list[psutil.Process]:
    """Processes with one of these names (the broker, the database server), for CPU only."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in names:
            found.append(proc)
    return found
