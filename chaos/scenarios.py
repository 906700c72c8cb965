"""The fault scenarios: what each starts, which faults it injects and when, what it checks.

A scenario's `inject` runs while the clients upload (the load window of `duration` seconds);
faults land at random moments inside that window. Each fault is recorded with the wall time it
struck and the wall time the system was whole again (`lifted`), for the recovery column.
`check` runs after the drain, before the processes stop, for checks of the scenario's own
(dead letters, the rogue's swallowed steps); it adds notes, and `problems` when the scenario
did not hold (the test fails on any problem).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aio_pika

from chaos import audit, servers
from chaos.completions import CompletionChaos, Tally, amqp_verdict, is_refusal_reason
from chaos.load import Load, LoadResult
from chaos.system import STEPS, System


def log(message: str) -> None:
    import sys

    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Fault:
    kind: str
    at: float  # wall time the fault struck
    lifted: float | None = None  # wall time the system was whole again (None: never restored)
    detail: str = ""


@dataclass
class Ctx:
    system: System
    rng: random.Random
    reduced: bool
    duration: float
    workflows: int
    scenario: str = ""
    load_started: float = 0.0  # monotonic
    faults: list[Fault] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    designed_failures: set[str] = field(default_factory=set)  # ids meant to fail / be cancelled
    recovery_override: float | None = None
    state: dict[str, Any] = field(default_factory=dict)
    load: LoadResult | None = None
    clients: Load | None = None
    min_gap: float = 2.0  # seconds of normal work between one fault being lifted and the next

    async def until(self, fraction: float) -> None:
        """Sleep until `fraction` of the load window has passed, and at least `min_gap` after
        the last fault was lifted (faults at random moments, not a crash loop)."""
        delay = self.load_started + fraction * self.duration - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lifted = [f.lifted for f in self.faults if f.lifted is not None]
        if lifted:
            gap = max(lifted) + self.min_gap - time.time()
            if gap > 0:
                await asyncio.sleep(gap)

    def moments(self, count: int, lo: float = 0.15, hi: float = 0.8) -> list[float]:
        return sorted(self.rng.uniform(lo, hi) for _ in range(count))

    def count(self, reduced: int, full: int) -> int:
        return reduced if self.reduced else full

    async def all_healthy(self, timeout: float = 90.0) -> float:
        """Every live gateway answers `/health` 200; the wall time of the last one."""
        done = time.time()
        for gateway in self.system.gateways:
            if gateway.child is not None and gateway.child.alive():
                done = max(done, await self.system.wait_healthy(gateway, timeout))
        return done


Inject = Callable[[Ctx], Coroutine[Any, Any, None]]
Check = Callable[[Ctx, audit.DbState], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    gateways: int = 2
    image_service: str = "noop"  # "poison": chaos.poison_service serves image_processing
    noop_delay: str = "50ms"
    poison_every: int = 0
    inject: Inject | None = None
    check: Check | None = None
    fault_summary: str = ""
    # Restarts a server every test on this machine shares (the test suite runs these alone).
    restarts_servers: bool = False


# -- gateway faults -----------------------------------------------------------------------


async def kill_single_gateway(ctx: Ctx) -> None:
    gateway = ctx.system.gateways[0]
    for moment in ctx.moments(ctx.count(2, 3)):
        await ctx.until(moment)
        assert gateway.child is not None
        at = time.time()
        await asyncio.to_thread(gateway.child.kill)
        log(f"SIGKILL {gateway.name} (generation {gateway.generation})")
        await asyncio.sleep(ctx.rng.uniform(0.2, 1.0))
        ctx.system.spawn_gateway(gateway)
        healthy = await ctx.system.wait_healthy(gateway)
        ctx.faults.append(Fault("SIGKILL gateway", at, healthy))
        log(f"{gateway.name} back after {healthy - at:.1f}s")


def crash_point_cycles(point: str) -> Inject:
    async def inject(ctx: Ctx) -> None:
        gateway = ctx.system.gateways[0]
        for moment in ctx.moments(ctx.count(2, 3), 0.1, 0.7):
            await ctx.until(moment)
            assert gateway.child is not None
            # A deploy: the clean gateway stops gracefully; the new one carries the crash point.
            await asyncio.to_thread(gateway.child.stop, 20)
            child = ctx.system.spawn_gateway(gateway, STOX_CRASH_POINT=point)
            # Traffic for it, should the clients be done by now: its first commit crashes it.
            assert ctx.clients is not None
            ctx.clients.submit(f"{ctx.system.tag}-{gateway.generation}")
            deadline = time.monotonic() + 45
            while child.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            at = time.time()
            hits = audit.log_lines([child.log_path], "crash_point.hit")
            if hits:
                at = _iso_ts(hits[0].get("timestamp")) or at
            code = child.returncode
            if code != 97:
                ctx.problems.append(f"crash point {point} not reached (exit {code})")
                await asyncio.to_thread(child.stop, 20)
            log(f"{gateway.name} exited {code} at crash point {point}")
            ctx.system.spawn_gateway(gateway)
            healthy = await ctx.system.wait_healthy(gateway)
            ctx.faults.append(Fault(f"crash {point}", at, healthy, detail=f"exit {code}"))
            log(f"{gateway.name} back after {healthy - at:.1f}s")

    return inject


def _iso_ts(value: Any) -> float | None:
    from datetime import datetime

    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def outage_beyond_deadline(ctx: Ctx) -> None:
    """A quiet system; an upload arrives and the gateway dies right after committing it (the
    crash point: the new workflow's first step message is still in the outbox); it stays down
    longer than a step deadline. The services are fine (1 s per step). Nothing should run
    twice: the step's message had not even been sent when its deadline started running."""
    from stox_gateway.config.durations import parse_duration

    gateway = ctx.system.gateways[0]
    timeout = parse_duration(ctx.system.config.steps["image_processing"].timeout).total_seconds()
    await ctx.until(1.0)
    for _ in range(ctx.count(1, 2)):
        await _quiet(ctx)
        assert gateway.child is not None and ctx.clients is not None
        await asyncio.to_thread(gateway.child.stop, 20)
        child = ctx.system.spawn_gateway(gateway, STOX_CRASH_POINT="after_commit_before_publish")
        ctx.clients.submit(f"{ctx.system.tag}-{gateway.generation}")
        deadline = time.monotonic() + 45
        while child.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        at = time.time()
        code = child.returncode
        if code != 97:
            ctx.problems.append(f"crash point not reached (exit {code})")
            await asyncio.to_thread(child.stop, 20)
        down_for = timeout + 3.0
        log(
            f"{gateway.name} exited {code} after a commit; "
            f"down for {down_for:.0f}s (deadline {timeout:g}s)"
        )
        await asyncio.sleep(max(0.0, at + down_for - time.time()))
        ctx.system.spawn_gateway(gateway)
        healthy = await ctx.system.wait_healthy(gateway)
        ctx.faults.append(Fault("crash + outage beyond the deadline", at, healthy, f"exit {code}"))
        log(f"{gateway.name} back after {healthy - at:.1f}s")


async def _quiet(ctx: Ctx, timeout: float = 60.0) -> None:
    """Until every workflow accepted so far is final (bounded)."""
    assert ctx.clients is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = list(ctx.clients.result.accepted.values())
        if await audit.not_final(ctx.system.config.pg_url, ctx.system.schema, ids) == 0:
            return
        await asyncio.sleep(0.5)


async def kill_one_replica(ctx: Ctx) -> None:
    a, b = ctx.system.gateways[0], ctx.system.gateways[1]
    # Reduced: B dies for good, A carries on. Full: B dies and comes back, later A dies for good.
    plan = [(b, None)] if ctx.reduced else [(b, 3.0), (a, None)]
    for moment, (victim, back_after) in zip(ctx.moments(len(plan), 0.2, 0.75), plan, strict=True):
        await ctx.until(moment)
        assert victim.child is not None
        at = time.time()
        await asyncio.to_thread(victim.child.kill)
        log(f"SIGKILL replica {victim.name}")
        lifted: float | None = at  # the other replica serves on at once
        if back_after is not None:
            await asyncio.sleep(back_after)
            ctx.system.spawn_gateway(victim)
            await ctx.system.wait_healthy(victim)
        ctx.faults.append(Fault(f"SIGKILL replica {victim.name}", at, lifted))


# -- broker faults ------------------------------------------------------------------------


async def close_connections(ctx: Ctx) -> None:
    for moment in ctx.moments(ctx.count(2, 3)):
        await ctx.until(moment)
        pids = ctx.system.pids()
        closed = await servers.close_amqp_connections(pids, "chaos")
        at = time.time()
        log(f"broker closed {closed} connections of {len(pids)} processes")
        if closed == 0:
            ctx.problems.append("close_connections: the broker closed no connection")
        await asyncio.sleep(0.5)
        healthy = await ctx.all_healthy()
        ctx.faults.append(Fault("connections closed", at, healthy, detail=f"{closed} connections"))


async def restart_rabbitmq(ctx: Ctx) -> None:
    await ctx.until(ctx.rng.uniform(0.25, 0.5))
    at = time.time()
    log("rabbitmqctl stop_app")
    try:
        await servers.rabbitmq_stop_app()
        await asyncio.sleep(ctx.rng.uniform(1.0, 3.0))
    finally:
        log("rabbitmqctl start_app")
        await servers.rabbitmq_start_app()
    back = time.time()
    healthy = await ctx.all_healthy()
    ctx.faults.append(
        Fault("RabbitMQ restart", at, healthy, detail=f"broker down {back - at:.1f}s")
    )
    log(f"broker back after {back - at:.1f}s, gateways healthy after {healthy - at:.1f}s")


async def restart_postgres(ctx: Ctx) -> None:
    await ctx.until(ctx.rng.uniform(0.3, 0.6))
    at = time.time()
    log("pg_ctlcluster restart")
    await servers.postgres_restart()
    back = time.time()
    healthy = await ctx.all_healthy()
    ctx.faults.append(
        Fault("PostgreSQL restart", at, healthy, detail=f"restart took {back - at:.1f}s")
    )
    log(f"PostgreSQL back after {back - at:.1f}s, gateways healthy after {healthy - at:.1f}s")


# -- service faults -----------------------------------------------------------------------


async def kill_services(ctx: Ctx) -> None:
    system = ctx.system
    for moment in ctx.moments(ctx.count(2, 3), 0.2, 0.8):
        await ctx.until(moment)
        # The victim: the service with the most steps in hand right now.
        running = await audit.running_by_step(system.config.pg_url, system.schema)
        victim = max(system.services, key=lambda s: (running.get(s.step, 0), ctx.rng.random()))
        assert victim.child is not None
        at = time.time()
        await asyncio.to_thread(victim.child.kill)
        log(f"SIGKILL service {victim.step} ({running.get(victim.step, 0)} steps running)")
        await asyncio.sleep(ctx.rng.uniform(0.3, 1.0))
        system.spawn_service(victim)
        await system.wait_consuming(victim)
        ctx.faults.append(
            Fault(
                f"SIGKILL {victim.step}", at, time.time(), f"{running.get(victim.step, 0)} in hand"
            )
        )


async def rogue_consumers(ctx: Ctx) -> None:
    swallowed: list[dict[str, Any]] = ctx.state.setdefault("swallowed", [])

    async def one(moment: float) -> None:
        await ctx.until(moment)
        child = ctx.system.spawn_rogue("image_processing")
        code = await asyncio.to_thread(child.wait, 45)
        out = child.log().strip().splitlines()
        report = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
        if code != 0 or not report.get("swallowed"):
            ctx.problems.append(f"rogue consumer took no message (exit {code}): {child.tail(500)}")
            return
        swallowed.append(report)
        ctx.faults.append(Fault("rogue ack, no report", report["acked_at"], report["acked_at"]))
        log(f"rogue swallowed {report['workflow_id']} attempt {report['attempt']}")

    # Side by side, at their own moments: each takes whatever step message comes to it first.
    await asyncio.gather(*(one(m) for m in ctx.moments(ctx.count(2, 3), 0.05, 0.5)))


async def check_rogue(ctx: Ctx, db: audit.DbState) -> None:
    swallowed = sorted(ctx.state.get("swallowed", []), key=lambda r: r["acked_at"])
    last_swallow = {r["step_id"]: r for r in swallowed}  # a retry may be swallowed again
    recovered, recovery = 0, []
    for report in swallowed:
        steps = db.steps.get(report["workflow_id"], [])
        step = next((s for s in steps if s["id"] == report["step_id"]), None)
        if step and step["status"] == "completed" and step["attempts"] > report["attempt"]:
            recovered += 1
            if last_swallow[report["step_id"]] is report:
                recovery.append(step["completed_at"].timestamp() - report["acked_at"])
        else:
            ctx.problems.append(f"swallowed step not retried to completion: {report} → {step}")
    ctx.notes.append(
        f"{len(swallowed)} step messages swallowed (acked, never reported); {recovered} caught by "
        "their deadline and completed on a later attempt"
    )
    if recovery:
        ctx.recovery_override = max(recovery)


# -- poison ---------------------------------------------------------------------------------


MALFORMED = (
    (b"this is not JSON {", "chaos-malformed-not-json"),
    (
        b'{"event_type": "step.image_processing", "note": "no workflow, no step"}',
        "chaos-malformed-fields",
    ),
)
MALFORMED_IDS = frozenset(message_id for _, message_id in MALFORMED)


async def publish_malformed(ctx: Ctx) -> None:
    await ctx.until(ctx.rng.uniform(0.2, 0.6))
    queue = ctx.system.step_queue("image_processing")
    connection = await aio_pika.connect(ctx.system.config.amqp_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for body, message_id in MALFORMED:
            # Straight onto the step queue, through the default exchange.
            await channel.default_exchange.publish(
                aio_pika.Message(body=body, message_id=message_id, content_type="application/json"),
                routing_key=queue,
            )
    finally:
        await connection.close()
    log(f"published {len(MALFORMED)} malformed messages onto {queue}")


async def check_poison(ctx: Ctx, db: audit.DbState) -> None:
    system = ctx.system
    dead = ctx.state["dead_letters"].get(system.step_queue("image_processing"), [])
    by_id = {d["message_id"]: d for d in dead}
    ok = 0
    for _, message_id in MALFORMED:
        letter = by_id.get(message_id)
        if letter is None:
            ctx.problems.append(f"malformed message {message_id} not in the dead-letter queue")
        elif not letter["reason"]:
            ctx.problems.append(f"malformed message {message_id} dead-lettered without a reason")
        else:
            ok += 1
    reasons = sorted({d["reason"][:60] for d in dead if d["message_id"] in by_id})
    ctx.notes.append(
        f"malformed messages: {ok}/{len(MALFORMED)} read back from "
        f"`{system.step_queue('image_processing')}.dead` with a reason ({'; '.join(reasons)})"
    )
    poisoned = [w for w, row in db.workflows.items() if (row["name"] or "").startswith("poison")]
    good = 0
    for wf in poisoned:
        row = db.workflows[wf]
        if row["status"] == "failed" and "poisoned" in (row["error"] or ""):
            good += 1
            ctx.designed_failures.add(wf)
        else:
            ctx.problems.append(f"poison workflow {wf} ended {row['status']}: {row['error']}")
    attempts = sorted(
        {
            s["attempts"]
            for w in poisoned
            for s in db.steps.get(w, [])
            if s["type"] == "image_processing"
        }
    )
    ctx.notes.append(
        f'{good}/{len(poisoned)} poison products failed with reason "poisoned" '
        f"(image_processing attempts: {attempts})"
    )


# -- duplicate and reordered completions ----------------------------------------------------


async def duplicate_completions(ctx: Ctx) -> None:
    system = ctx.system
    a, b = system.gateways[0], system.gateways[1]
    chaos = CompletionChaos(
        http_url=a.url,
        grpc_target=b.grpc_target,
        amqp_url=system.config.amqp_url,
        exchange=system.exchange,
        max_attempts=system.config.steps["image_processing"].max_attempts,
        rng=random.Random(ctx.rng.random()),
    )
    tally = await chaos.run(
        until=ctx.load_started + ctx.duration + 2, max_workflows=max(4, int(ctx.workflows * 0.6))
    )
    ctx.state["tally"] = tally
    log(f"completions sent: {dict(tally.sent_by_transport())}; outcomes: {dict(tally.outcomes)}")


async def check_completions(ctx: Ctx, db: audit.DbState) -> None:
    tally: Tally = ctx.state["tally"]
    dead = ctx.state["dead_letters"].get(ctx.system.completed_queue, [])
    amqp = amqp_verdict(tally, dead)
    by = tally.sent_by_transport()
    o = tally.outcomes
    ctx.notes.append(
        f"{len(tally.attacked)} running workflows hit: HTTP {by['http']} sent → "
        f"{o['http applied']} applied, {o['http repeat']} repeats (200), "
        f"{o['http refused']} refused (4xx), "
        f"{o['http error']} 5xx/no answer; gRPC {by['grpc']} → {o['grpc applied']} applied, "
        f"{o['grpc repeat']} repeats, {o['grpc refused']} FAILED_PRECONDITION/NOT_FOUND, "
        f"{o['grpc error']} other; AMQP {by['amqp']} → "
        f"{amqp['dead_refused']} dead-lettered as refused, "
        f"{amqp['dead_errors']} dead-lettered by an error"
    )
    by_script = Counter(
        s["completed_by_chaos"]
        for w in tally.attacked
        for s in db.steps.get(w, [])
        if s["completed_by_chaos"]
    )
    by_service = sum(
        1
        for w in tally.attacked
        for s in db.steps.get(w, [])
        if s["status"] == "completed" and not s["completed_by_chaos"]
    )
    ctx.notes.append(
        "steps of the hit workflows completed by a script report: "
        f"{dict(by_script)} (any transport), "
        f"by the real service's report: {by_service}"
    )
    ctx.notes.append(
        f"{len(tally.cancelled)} workflows cancelled, then completed on every transport (refused); "
        f"{tally.reorder_applied} next-step reports applied because the real service had moved on"
    )
    if tally.errors:
        ctx.problems.append(f"{len(tally.errors)} protocol errors, e.g. {tally.errors[:3]}")
    if amqp["dead_errors"]:
        bad = [d["reason"] for d in dead if not is_refusal_reason(d["reason"])]
        ctx.problems.append(
            f"{amqp['dead_errors']} AMQP completions dead-lettered by an error: {bad[:3]}"
        )
    if tally.applied_twice:
        ctx.problems.append(f"applied twice (by the answers): {tally.applied_twice[:3]}")
    if tally.designed_refusal_accepted:
        ctx.notes.append(
            f"{len(tally.designed_refusal_accepted)} reports meant to be refused were answered "
            "2xx: "
            f"{tally.designed_refusal_accepted[:3]}"
        )
        ctx.problems.append("reports meant to be refused were accepted")
    for wf in tally.cancelled:
        if db.workflows.get(wf, {}).get("status") == "cancelled":
            ctx.designed_failures.add(wf)


# -- the list -------------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", "No fault (control)", fault_summary="none"),
    Scenario(
        "gateway_sigkill",
        "SIGKILL of the single gateway, restart",
        gateways=1,
        inject=kill_single_gateway,
        fault_summary="SIGKILL at random moments",
    ),
    Scenario(
        "crash_after_commit_before_publish",
        "Gateway crash point after_commit_before_publish",
        gateways=1,
        inject=crash_point_cycles("after_commit_before_publish"),
        fault_summary="exit 97 at the crash point, restart",
    ),
    Scenario(
        "crash_after_publish_before_mark",
        "Gateway crash point after_publish_before_mark",
        gateways=1,
        inject=crash_point_cycles("after_publish_before_mark"),
        fault_summary="exit 97 at the crash point, restart",
    ),
    Scenario(
        "gateway_down_beyond_deadline",
        "Gateway down (right after a commit) for longer than a step deadline",
        gateways=1,
        noop_delay="1s",
        inject=outage_beyond_deadline,
        fault_summary="crash after commit, down deadline + 3 s",
    ),
    Scenario(
        "replica_sigkill",
        "SIGKILL of one of two replicas (fail-over)",
        inject=kill_one_replica,
        fault_summary="SIGKILL of a replica",
    ),
    Scenario(
        "amqp_connections_closed",
        "Broker closes every AMQP connection of the system",
        inject=close_connections,
        fault_summary="close_connection ×n",
    ),
    Scenario(
        "rabbitmq_restart",
        "RabbitMQ restart (stop_app / start_app)",
        inject=restart_rabbitmq,
        fault_summary="stop_app, 1–3 s, start_app",
        restarts_servers=True,
    ),
    Scenario(
        "service_sigkill_before_ack",
        "Service SIGKILLed with messages in hand (before ack)",
        noop_delay="300ms",
        inject=kill_services,
        fault_summary="SIGKILL of the busiest service, restart",
    ),
    Scenario(
        "rogue_ack_no_report",
        "Rogue consumer acks a step and exits without reporting",
        inject=rogue_consumers,
        check=check_rogue,
        fault_summary="rogue takes one message",
    ),
    Scenario(
        "poison_and_malformed",
        "Poison products (always Retry) + malformed step messages",
        image_service="poison",
        poison_every=5,
        inject=publish_malformed,
        check=check_poison,
        fault_summary="20% poison, 2 malformed",
    ),
    Scenario(
        "duplicate_reordered_completions",
        "Duplicate and reordered completions over HTTP, gRPC and AMQP",
        noop_delay="1s",  # workflows stay in flight while the reports race the services
        inject=duplicate_completions,
        check=check_completions,
        fault_summary="6 copies + out-of-order reports",
    ),
    Scenario(
        "postgres_restart",
        "PostgreSQL restart",
        inject=restart_postgres,
        fault_summary="pg_ctlcluster restart",
        restarts_servers=True,
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}
__all__ = ["BY_NAME", "SCENARIOS", "STEPS", "Ctx", "Fault", "Scenario", "log"]
