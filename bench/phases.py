"""One trial of one variant: start, warm up, throughput, latency, [WebSocket push], stop.

Every number a trial measures goes into a plain dict (JSON-ready); `report` aggregates them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
import traceback
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from bench import procs
from bench.load import LoadResult, closed_loop, paced
from bench.variants import make
from bench.variants.base import Context, Variant


@dataclass(frozen=True)
class Plan:
    n: int = 3000  # workflows in the throughput phase
    in_flight: int = 200
    max_seconds: float = 60.0  # ... or fewer: no new workflow starts after this long
    latency_n: int = 300  # workflows at W=1
    warmup: int = 100
    ws_clients: int = 1000  # connected during the push phase, the harness's listener included
    ws_firehose: int = 10  # of which follow every workflow and time the push
    ws_rate: float = 200.0  # workflows per second during the push phase
    ws_seconds: float = 10.0  # per push sub-phase (target rate, then half the capacity)
    ws_max_in_flight: int = 200  # unfinished workflows at most during the push phase
    retries: int = 1  # a failed trial (e.g. the broker went away) is run again this often


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else float("nan"),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
    }


# -- CPU ---------------------------------------------------------------------------------


Snapshot = dict[str, dict[int, float]]  # role → pid → CPU seconds


def _snapshot(variant: Variant, extra: dict[str, list[psutil.Process]]) -> Snapshot:
    groups = {**variant.process_groups(), **extra, "harness (load client)": [psutil.Process()]}
    return {
        name: {p.pid: procs.cpu_seconds([p]) for p in plist} for name, plist in groups.items()
    }


def _cpu_delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
    delta: dict[str, float] = {}
    for name, now in after.items():
        was = before.get(name, {})
        delta[name] = sum(max(0.0, cpu - was.get(pid, 0.0)) for pid, cpu in now.items())
    return delta


def _shared_servers(variant: Variant) -> dict[str, list[psutil.Process]]:
    """The broker (and the database server) do work for the variant too."""
    extra: dict[str, list[psutil.Process]] = {}
    if not variant.key.startswith("stox-embedded"):
        extra["rabbitmq (broker)"] = procs.find_processes(["beam.smp"])
    if variant.key == "stox-rmq-pg":
        extra["postgresql (server)"] = procs.find_processes(["postgres"])
    return extra


def _psi_some_total() -> float:
    """Seconds that some runnable task waited for a CPU (Linux PSI), since boot."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        line = open("/proc/pressure/cpu").readline()  # noqa: SIM115
        return int(line.split("total=")[1]) / 1e6
    return float("nan")


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


class CpuMeter:
    """CPU seconds of every process of the variant (and the broker, database, harness), and
    how busy the rest of the machine was meanwhile (other users of this shared machine)."""

    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.extra = _shared_servers(variant)
        self.before = _snapshot(variant, self.extra)
        self.t0, self.busy0, self.psi0 = time.perf_counter(), _machine_busy(), _psi_some_total()

    def per_workflow_ms(self, workflows: int) -> dict[str, float]:
        delta = _cpu_delta(self.before, _snapshot(self.variant, self.extra))
        return {name: secs * 1000.0 / max(1, workflows) for name, secs in delta.items()}

    def noise(self, cpu_ms_per_wf: dict[str, float], workflows: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.t0
        busy = _machine_busy() - self.busy0
        ours = sum(cpu_ms_per_wf.values()) * max(1, workflows) / 1000.0
        return {
            "other_cores": max(0.0, busy - ours) / elapsed,  # CPU used by everything else
            "machine_cores": busy / elapsed,
            "cpu_pressure": (_psi_some_total() - self.psi0) / elapsed,  # share of time waiting
        }


# -- phases ------------------------------------------------------------------------------


def _load_dict(result: LoadResult) -> dict[str, Any]:
    return {
        "n": result.n,
        "in_flight": result.in_flight,
        "finished": len(result.latencies),
        "elapsed_s": result.elapsed,
        "wf_per_s": result.throughput,
        "errors": result.errors[:20],
        "error_count": len(result.errors),
        **summary_ms(result.latencies),
    }


async def run_trial(key: str, ctx: Context, trial: str, plan: Plan, rnd: int) -> dict[str, Any]:
    """One trial; run again (under a new name) when it fails, up to `plan.retries` times."""
    record: dict[str, Any] = {}
    for attempt in range(plan.retries + 1):
        suffix = f".a{attempt + 1}" if attempt else ""
        await wait_for_servers(ctx, key)
        record = await _trial(key, ctx, trial + suffix, plan, rnd)
        record["attempt"] = attempt + 1
        if record.get("ok"):
            break
        print(f"    attempt {attempt + 1} failed: {record.get('error')}", flush=True)
    return record


async def wait_for_servers(ctx: Context, key: str, timeout: float = 180.0) -> None:
    """RabbitMQ (and PostgreSQL) may be restarted by other users of this machine: wait."""
    import aio_pika
    import asyncpg

    async def up() -> bool:
        if not key.startswith("stox-embedded"):
            connection = await aio_pika.connect(ctx.amqp_url, timeout=5)
            await connection.close()
        if key == "stox-rmq-pg":
            conn = await asyncpg.connect(ctx.pg_url.replace("+asyncpg", ""), timeout=5)
            await conn.close()
        return True

    from bench.variants.base import poll

    await poll(up, timeout, "RabbitMQ/PostgreSQL", interval=2.0)


async def _trial(key: str, ctx: Context, trial: str, plan: Plan, rnd: int) -> dict[str, Any]:
    record: dict[str, Any] = {"variant": key, "round": rnd, "trial": trial, "ok": False}
    variant = make(key, ctx, trial)
    record["label"] = variant.label
    started = time.monotonic()
    try:
        await variant.start()
        warm = await closed_loop(variant.run_one, plan.warmup, min(50, plan.warmup), 180)
        if warm.errors:
            raise RuntimeError(f"warm-up failed: {warm.errors[:3]}")
        variant.check_alive()

        meter = CpuMeter(variant)
        result = await closed_loop(variant.run_one, plan.n, plan.in_flight,
                                   plan.max_seconds + 180, max_seconds=plan.max_seconds)
        record["cpu_ms_per_wf"] = meter.per_workflow_ms(len(result.latencies))
        record["noise"] = meter.noise(record["cpu_ms_per_wf"], len(result.latencies))
        record["throughput"] = _load_dict(result)
        stox_client = getattr(variant, "client", None)
        if stox_client is not None:
            record["client_push"] = summary_ms([m / 1000 for m in stox_client.push_ms])
        variant.check_alive()
        await asyncio.sleep(0.5)

        result = await closed_loop(variant.run_one, plan.latency_n, 1, 60 + plan.latency_n * 2)
        record["latency"] = _load_dict(result)
        record["server_peak_rss"] = sum(
            procs.peak_rss_bytes(p.pid) for plist in variant.process_groups().values()
            for p in plist
        )
        pid = variant.gateway_pid()
        if pid:
            record["gateway_peak_rss"] = procs.peak_rss_bytes(pid)
        variant.check_alive()

        if variant.has_websocket and plan.ws_clients > 0:
            record["ws"] = await ws_push_phase(variant, plan, record["throughput"]["wf_per_s"])
        if stox_client is not None:
            record["http_retries"] = stox_client.retries
            record["ws_reconnects"] = stox_client.reconnects
        record["ok"] = not (record["throughput"]["error_count"] or record["latency"]["error_count"])
        if not record["ok"]:
            errs = record["throughput"]["errors"][:2] + record["latency"]["errors"][:2]
            record["error"] = f"errors during the measurement: {errs}"
    except Exception as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-3000:]
        record["logs"] = {name: child.tail(15) for name, child in variant.children.items()}
    finally:
        with contextlib.suppress(Exception):
            await variant.stop()
        try:
            await variant.cleanup()
        except Exception as exc:
            record["cleanup_error"] = f"{type(exc).__name__}: {exc}"
        record["seconds"] = time.monotonic() - started
    return record


async def _read_line(popen: subprocess.Popen[bytes], timeout: float) -> str:
    assert popen.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(popen.stdout.readline), timeout)
    return line.decode().strip()


async def start_fleet(variant: Variant, name: str, args: list[str], timeout: float
                      ) -> tuple[procs.Child, str, str]:
    out = variant.log_dir / f"{name}.json"
    child = procs.spawn(
        name,
        [procs.PYTHON, "-m", "bench.wsfleet", "--url",
         variant.base_url.replace("http://", "ws://") + "/ws", "--out", str(out),
         *args],
        log_dir=variant.log_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    ready = await _read_line(child.popen, timeout)
    if not ready.startswith("READY"):
        child.stop()
        raise RuntimeError(f"{name} did not connect: {ready!r}\n{child.tail()}")
    return child, ready, str(out)


async def stop_fleet(child: procs.Child, out: str) -> dict[str, Any]:
    assert child.popen.stdin is not None
    with contextlib.suppress(OSError):
        child.popen.stdin.write(b"STOP\n")
        child.popen.stdin.flush()
    try:
        await asyncio.to_thread(child.popen.wait, 120)
    finally:
        child.stop()
    with open(out) as fh:
        return json.load(fh)


async def gateway_ws_clients(variant: Variant) -> int | None:
    with contextlib.suppress(Exception):
        async with httpx.AsyncClient(timeout=10) as http:
            body = (await http.get(f"{variant.base_url}/health")).json()
            return int(body.get("websocket_clients"))
    return None


async def ws_push_phase(variant: Variant, plan: Plan, capacity: float) -> dict[str, Any]:
    """`ws_clients` connected, `ws_firehose` of them timing every `workflow_completed`.

    Two sub-phases: uploads at the target rate (`ws_rate`), then at half of what the gateway
    achieved there, so a gateway that cannot keep up with the target still gets a push
    latency that is not its backlog. Half of what it achieved *with these clients connected*:
    the throughput phase has no WebSocket, and half of its figure could be nearly the whole
    capacity of a gateway that also sends every update to the clients.
    """
    ids = list(variant.client.ids)
    watch_file = variant.log_dir / "watch-ids.txt"
    watch_file.write_text("\n".join(ids[-5000:]))
    watchers = max(0, plan.ws_clients - plan.ws_firehose - 1)
    fleet, ready, out = await start_fleet(
        variant, "wsfleet",
        ["--firehose", str(plan.ws_firehose), "--watchers", str(watchers),
         "--watch-file", str(watch_file), "--connect-concurrency", "20"],
        timeout=600,
    )
    record: dict[str, Any] = {"ready": ready, "gateway_clients": await gateway_ws_clients(variant)}
    windows: dict[str, tuple[float, float]] = {}
    try:
        pid = variant.gateway_pid()
        assert pid is not None
        gateway = psutil.Process(pid)
        rate = plan.ws_rate
        for name in ("target", "half_capacity"):
            cpu0, t0, wall0 = procs.cpu_seconds([gateway]), time.perf_counter(), time.time()
            result = await paced(variant.run_one, rate, plan.ws_seconds,
                                 max_in_flight=plan.ws_max_in_flight, drain=90)
            sub = _load_dict(result)
            sub["rate_asked"] = rate
            sub["gateway_cpu_pct"] = (
                100.0 * (procs.cpu_seconds([gateway]) - cpu0) / (time.perf_counter() - t0)
            )
            record[name] = sub
            windows[name] = (wall0, time.time())
            # The next rate: half of what the gateway achieved here, with the clients connected.
            rate = max(1.0, min(plan.ws_rate, sub["wf_per_s"] or capacity) / 2)
            await asyncio.sleep(0.5)
        record["gateway_rss"] = procs.rss_bytes(pid)
        record["gateway_peak_rss"] = procs.peak_rss_bytes(pid)
        await asyncio.sleep(1.0)
    finally:
        fleet_result = await stop_fleet(fleet, out)
    samples = fleet_result.pop("samples")
    record["fleet"] = fleet_result
    record["clients"] = fleet_result["connected"] + 1
    for name, (lo, hi) in windows.items():
        mine = [ms for commit, ms in samples if lo <= commit < hi]
        record[name].update(
            samples=len(mine), push_p50_ms=percentile(mine, 50), push_p99_ms=percentile(mine, 99),
            push_max_ms=max(mine) if mine else float("nan"),
        )
    return record


async def idle_phase(ctx: Context, trial: str, clients: int, hold: float,
                     connect_concurrency: int = 10, deflate: bool = True) -> dict[str, Any]:
    """Gateway RSS with `clients` idle WebSockets on `/ws` (Stox on RabbitMQ, SQLite)."""
    variant = make("stox-rmq-sqlite", ctx, trial)
    record: dict[str, Any] = {"variant": variant.key, "label": variant.label, "clients": clients,
                              "deflate": deflate}
    try:
        await variant.start()
        await closed_loop(variant.run_one, 100, 20, 180)  # a full snapshot for each client
        pid = variant.gateway_pid()
        assert pid is not None
        await asyncio.sleep(1.0)
        record["rss_before"] = procs.rss_bytes(pid)
        fleet, ready, out = await start_fleet(
            variant, "idlefleet",
            ["--idle", str(clients), "--connect-concurrency", str(connect_concurrency),
             *([] if deflate else ["--no-deflate"])],
            timeout=3600,
        )
        record["ready"] = ready
        try:
            record["gateway_clients"] = await gateway_ws_clients(variant)
            record["rss_connected"] = procs.rss_bytes(pid)
            samples = []
            end = time.monotonic() + hold
            while time.monotonic() < end:
                samples.append(procs.rss_bytes(pid))
                await asyncio.sleep(1.0)
            record["rss_hold_max"] = max(samples)
            record["rss_end"] = procs.rss_bytes(pid)
            record["gateway_peak_rss"] = procs.peak_rss_bytes(pid)
            record["gateway_clients_end"] = await gateway_ws_clients(variant)
            record["gateway_fds"] = psutil.Process(pid).num_fds()
        finally:
            record["fleet"] = await stop_fleet(fleet, out)
        record["ok"] = True
    except Exception as exc:
        record["ok"] = False
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()[-3000:]
        record["logs"] = {name: child.tail(15) for name, child in variant.children.items()}
    finally:
        with contextlib.suppress(Exception):
            await variant.stop()
        with contextlib.suppress(Exception):
            await variant.cleanup()
    record["nofile_limit"] = os.sysconf("SC_OPEN_MAX")
    return record
