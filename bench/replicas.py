"""The same total load against R gateway replicas: does the gateway's CPU per workflow stay
flat as replicas are added? (`bench/run.py --replicas 1,2,4`)

For each R: R `stox_gateway serve` processes on one RabbitMQ exchange and one PostgreSQL
schema, auth on (per-user owners, as in production), three no-op worker processes. Four
owners; each has one WebSocket following all of its workflows (`/ws`), on replica
`owner % R`; uploads go round-robin over the replicas (a load balancer), owner `k % 4` for
the k-th. A closed loop keeps W workflows in flight until N have finished. Reported: the
TOTAL CPU seconds of the R gateway processes (psutil user + system, over the measured phase)
per finished workflow, with the workers', RabbitMQ's and PostgreSQL's, and the load average.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from bench import cleanup, procs
from bench.load import closed_loop
from bench.variants.base import Context, Waiters, free_port, slug
from bench.variants.stox import STEP_TYPES, _python

OWNERS = 4


@dataclass
class ReplicaPlan:
    n: int = 2000
    in_flight: int = 100
    warmup: int = 100
    timeout: float = 300.0
    idle_seconds: float = 5.0


@dataclass
class Fleet:
    """One R's processes and clients."""

    trial: str
    replicas: int
    log_dir: Path
    urls: list[str] = field(default_factory=list)
    gateways: list[procs.Child] = field(default_factory=list)
    workers: list[procs.Child] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    http: list[httpx.AsyncClient] = field(default_factory=list)
    listeners: list[asyncio.Task[None]] = field(default_factory=list)
    waiters: Waiters = field(default_factory=Waiters)
    turn: itertools.count[int] = field(default_factory=itertools.count)


def _env(ctx: Context, fleet: Fleet, secret: str) -> dict[str, str]:
    config = fleet.log_dir / "stox-bench.yaml"  # so no ./config.yaml is picked up
    fleet.log_dir.mkdir(parents=True, exist_ok=True)
    config.write_text("logging:\n  level: WARNING\n")
    return {
        "STOX_CONFIG": str(config),
        "STOX_SERVER__HOST": "127.0.0.1",
        "STOX_SERVER__SHUTDOWN_TIMEOUT": "3s",
        "STOX_LOGGING__LEVEL": "WARNING",
        "STOX_LOGGING__FORMAT": "json",
        "STOX_EVENT_BUS": "rabbitmq",
        "STOX_RABBITMQ__URL": ctx.amqp_url,
        "STOX_RABBITMQ__EXCHANGE": f"{fleet.trial}.x",
        "STOX_RABBITMQ__QUEUE_PREFIX": fleet.trial,
        "STOX_DATABASE__URL": ctx.pg_url,
        "STOX_DATABASE__SCHEMA_NAME": slug(fleet.trial),
        "STOX_WORKERS__EMBEDDED": "false",
        "STOX_WORKERS__NOOP": "true",
        "STOX_AUTH__REQUIRED": "true",
        "STOX_AUTH__JWT_SECRET": secret,
        "STOX_AUTH__SERVICE_TOKEN": secret + "-service",
        "STOX_GRPC__HOST": "127.0.0.1",
        "STOX_GRPC__PORT": "0",
    }


async def _start(ctx: Context, fleet: Fleet) -> None:
    from stox_gateway.auth.tokens import TokenIssuer
    from stox_gateway.config.settings import AuthSettings

    secret = "bench-" + secrets.token_hex(24)
    env = _env(ctx, fleet, secret)
    for i in range(fleet.replicas):
        port = free_port()
        child = procs.spawn(
            f"gateway-{i}",
            [*_python(), "serve"],
            env={**env, "STOX_SERVER__PORT": str(port), "STOX_REPLICA_ID": f"r{i}"},
            log_dir=fleet.log_dir,
        )
        fleet.gateways.append(child)
        fleet.urls.append(f"http://127.0.0.1:{port}")
        url = fleet.urls[-1]

        await _healthy(url, child)  # one by one: the first one migrates the schema
    for step in STEP_TYPES:
        fleet.workers.append(
            procs.spawn(f"worker-{step}", [*_python(), "worker", step, "--noop"], env=env,
                        log_dir=fleet.log_dir)
        )
    issuer = TokenIssuer(AuthSettings(required=True, jwt_secret=secret,
                                      access_token_ttl="1h", max_token_lifetime="2h"))
    fleet.tokens = [issuer.issue(f"bench-owner-{o}", f"owner{o}@bench.invalid")
                    for o in range(OWNERS)]
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    fleet.http = [httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0)
                  for url in fleet.urls for _ in range(2)]
    connected = [asyncio.Event() for _ in range(OWNERS)]
    for owner in range(OWNERS):
        url = fleet.urls[owner % fleet.replicas].replace("http://", "ws://") + "/ws"
        fleet.listeners.append(asyncio.create_task(
            _listen(f"{url}?token={fleet.tokens[owner]}", fleet.waiters, connected[owner])))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in connected)), 60)


async def _healthy(url: str, child: procs.Child, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{child.name}: not healthy after {timeout:.0f} s")


async def _listen(url: str, waiters: Waiters, connected: asyncio.Event) -> None:
    while True:
        with contextlib.suppress(Exception):
            async with websockets.connect(url, max_size=None, max_queue=None,
                                          ping_interval=None) as ws:
                await ws.recv()  # the snapshot
                connected.set()
                async for raw in ws:
                    text = raw if isinstance(raw, str) else raw.decode()
                    if '"workflow_completed"' in text:
                        message = orjson.loads(text)
                        if message.get("type") == "workflow_completed":
                            waiters.done(message["workflow_id"], time.perf_counter())
        await asyncio.sleep(0.2)


async def _run_one(fleet: Fleet) -> float:
    k = next(fleet.turn)
    http = fleet.http[k % len(fleet.http)]  # round-robin over replicas (2 clients each)
    token = fleet.tokens[k % OWNERS]
    for attempt in range(3):
        try:
            response = await http.post(
                "/api/v1/workflow/upload",
                content=b'{"name": "Bench product", "price": 1, "category": "bench"}',
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            break
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
            # A kept-alive connection the server just closed: try a fresh one.
            if attempt == 2:
                raise
            await asyncio.sleep(0.05)
    if response.status_code != 202:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")
    return await fleet.waiters.expect(str(response.json()["workflow_id"]))


async def _stop(ctx: Context, fleet: Fleet) -> None:
    for task in fleet.listeners:
        task.cancel()
    await asyncio.gather(*fleet.listeners, return_exceptions=True)
    for client in fleet.http:
        await client.aclose()
    for child in [*fleet.workers, *fleet.gateways]:
        await asyncio.to_thread(child.stop, 10.0)
    base = [f"{fleet.trial}.step.{t}" for t in STEP_TYPES] + [f"{fleet.trial}.gateway.completed"]
    with contextlib.suppress(Exception):
        await cleanup.delete_amqp(ctx.amqp_url, base + [f"{q}.dead" for q in base],
                                  [f"{fleet.trial}.x", f"{fleet.trial}.x.dlx"])
    with contextlib.suppress(Exception):
        await cleanup.drop_schemas(ctx.pg_url, [slug(fleet.trial)])


async def _updates_received(fleet: Fleet) -> float:
    """gateway.update messages received by all replicas so far (their /metrics)."""
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as http:
        for url in fleet.urls:
            with contextlib.suppress(Exception):
                for line in (await http.get(f"{url}/metrics")).text.splitlines():
                    if line.startswith("stox_bus_updates_received_total "):
                        total += float(line.split()[1])
    return total


def _cpu(children: list[procs.Child]) -> float:
    return procs.cpu_seconds([p for c in children for p in c.processes()])


async def one_count(ctx: Context, trial: str, replicas: int, plan: ReplicaPlan) -> dict[str, Any]:
    fleet = Fleet(slug(trial), replicas, ctx.work_dir / slug(trial))
    started = time.monotonic()
    try:
        await _start(ctx, fleet)
        warm = await closed_loop(lambda: _run_one(fleet), plan.warmup, min(plan.in_flight, 50),
                                 plan.timeout)
        if warm.errors:
            raise RuntimeError(f"warm-up: {warm.errors[:3]}")
        # What the gateways burn with no load at all (pollers, timers), per second: with R
        # replicas it is paid R times, whatever the throughput.
        idle_before = _cpu(fleet.gateways)
        await asyncio.sleep(plan.idle_seconds)
        idle = (_cpu(fleet.gateways) - idle_before) * 1000 / plan.idle_seconds
        broker = procs.find_processes(["beam.smp"])
        database = procs.find_processes(["postgres"])
        before = (_cpu(fleet.gateways), _cpu(fleet.workers), procs.cpu_seconds(broker),
                  procs.cpu_seconds(database), os.times())
        load_before = os.getloadavg()
        received_before = await _updates_received(fleet)
        result = await closed_loop(lambda: _run_one(fleet), plan.n, plan.in_flight, plan.timeout)
        after = (_cpu(fleet.gateways), _cpu(fleet.workers), procs.cpu_seconds(broker),
                 procs.cpu_seconds(database), os.times())
        load_after = os.getloadavg()
        received = await _updates_received(fleet) - received_before
        done = len(result.latencies)
        harness = (after[4].user + after[4].system) - (before[4].user + before[4].system)
        per_wf = {name: (after[i] - before[i]) * 1000 / max(done, 1)  # type: ignore[operator]
                  for i, name in enumerate(("gateways", "workers", "rabbitmq", "postgresql"))}
        return {
            "replicas": replicas, "ok": not result.errors, "errors": result.errors[:3],
            "finished": done, "wf_per_s": result.throughput,
            "cpu_ms_per_wf": per_wf, "gateways_idle_cpu_ms_per_s": idle,
            "update_messages_received_per_wf": received / max(done, 1),
            "phase_seconds": result.elapsed, "harness_cpu_ms_per_wf": harness * 1000 / max(done, 1),
            "loadavg_before": load_before, "loadavg_after": load_after,
            "seconds": time.monotonic() - started,
        }
    except Exception as exc:
        logs = "\n".join(c.tail(5) for c in [*fleet.gateways, *fleet.workers])
        return {"replicas": replicas, "ok": False, "errors": [f"{exc!r}"[:500], logs[-2000:]],
                "seconds": time.monotonic() - started}
    finally:
        await _stop(ctx, fleet)


def markdown(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = [
        f"# Replicas: total gateway CPU per workflow ({meta['date']})", "",
        *(f"- {k}: {v}" for k, v in meta.get("facts", {}).items()), "",
        "| R | finished | wf/s | gateways CPU ms/wf (total) | × R=1 | workers | RabbitMQ "
        "| PostgreSQL | gateways idle CPU ms/s | update messages received per wf (all replicas) "
        "| load avg (1 min) before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((r["cpu_ms_per_wf"]["gateways"] for r in results
                 if r.get("ok") and r["replicas"] == 1), None)
    for r in results:
        if not r.get("ok"):
            lines.append(f"| {r['replicas']} | FAILED: {r['errors'][0]} | | | | | | | | | |")
            continue
        cpu = r["cpu_ms_per_wf"]
        ratio = f"{cpu['gateways'] / base:.2f}" if base else "–"
        lines.append(
            f"| {r['replicas']} | {r['finished']} | {r['wf_per_s']:.0f} | {cpu['gateways']:.2f} "
            f"| {ratio} | {cpu['workers']:.2f} | {cpu['rabbitmq']:.2f} | {cpu['postgresql']:.2f} "
            f"| {r['gateways_idle_cpu_ms_per_s']:.1f} "
            f"| {r.get('update_messages_received_per_wf', float('nan')):.2f} "
            f"| {r['loadavg_before'][0]:.1f} → {r['loadavg_after'][0]:.1f} |")
    return "\n".join(lines) + "\n"
