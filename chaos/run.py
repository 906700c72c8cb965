"""Run the fault-injection suite and print (and write) its results table.

    .venv/bin/python -m chaos.run                  # the full run: 1000 workflows in all
    .venv/bin/python -m chaos.run --reduced        # every scenario once, 40 workflows each
    .venv/bin/python -m chaos.run --scenarios poison_and_malformed,postgres_restart

Needs RabbitMQ on 127.0.0.1:5672 (with `rabbitmqctl`) and PostgreSQL on 127.0.0.1:5432 (with
`pg_ctlcluster`). Every scenario starts a system of its own (fresh exchange, queues and schema),
runs the load, injects its faults, waits for everything to settle, counts, and cleans up —
also after an error or Ctrl-C. The table goes to stdout and `chaos/results/latest.md`; process
logs and effects journals stay in the work folder it prints (evidence for a failing row).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from chaos import audit, procs, servers
from chaos.completions import is_refusal_reason
from chaos.load import Load, products
from chaos.scenarios import MALFORMED_IDS, SCENARIOS, Ctx, Scenario, log
from chaos.system import DEFAULT_STEP_TIMEOUT, STEPS, StepPolicy, System, SystemConfig

RESULTS = Path(__file__).resolve().parent / "results"
AMQP_URL = os.environ.get("STOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get(
    "STOX_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)

REDUCED_PER_SCENARIO = 40
FULL_TOTAL = 1000
RATE = 8.0  # uploads per second: the load window is workflows / RATE (at least 5 s)
DRAIN_AFTER_LAST_FAULT = 60.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Row:
    scenario: str
    title: str
    faults: str
    accepted: int = 0
    completed: int = 0
    failed_designed: int = 0
    failed_unexpected: int = 0
    lost: int = 0
    dup_state: int = 0
    dup_effects: int = 0
    repeats_absorbed: int = 0
    stuck: int = 0
    recovery_s: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the scenario did not hold (test fails)
    workdir: str = ""

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.dup_state
            or self.dup_effects
            or self.stuck
            or self.failed_unexpected
            or self.problems
        )


# -- one scenario ---------------------------------------------------------------------------


async def run_scenario(
    scenario: Scenario,
    *,
    index: int,
    run_tag: str,
    workflows: int,
    reduced: bool,
    workdir: Path,
    rng: random.Random,
    step_timeout: str = DEFAULT_STEP_TIMEOUT,
) -> Row:
    tag = f"{run_tag}_{index:02d}"
    config = SystemConfig(
        amqp_url=AMQP_URL,
        pg_url=PG_URL,
        noop_delay=scenario.noop_delay,
        steps={s: StepPolicy(timeout=step_timeout) for s in STEPS},
    )
    system = System(config, tag, workdir / f"{index:02d}-{scenario.name}")
    duration = max(5.0, workflows / RATE)
    ctx = Ctx(system, rng, reduced, duration, workflows, scenario=scenario.name)
    row = Row(scenario.name, scenario.title, scenario.fault_summary, workdir=str(system.workdir))
    started = time.monotonic()
    log(f"── {scenario.name}: {workflows} workflows over {duration:.0f}s ({system.workdir})")
    inject_task: asyncio.Task[None] | None = None
    try:
        await _start(system, scenario)
        uploads = products(tag, workflows, poison_every=scenario.poison_every)
        urls = [g.url for g in system.gateways]
        ctx.load_started = time.monotonic()
        ctx.clients = Load(urls, rng=random.Random(rng.random()))
        load_task = asyncio.create_task(ctx.clients.run(uploads, duration))
        if scenario.inject is not None:
            inject_task = asyncio.create_task(scenario.inject(ctx))
        try:
            if inject_task is not None:
                await inject_task
        finally:
            await load_task
            load = await ctx.clients.finish()
        ctx.load = load
        load_ended = time.time()
        ids = load.ids
        log(f"load done: {load.summary()}")

        # Drain: every accepted workflow final, or 60 s after the last fault.
        last = max([f.lifted or f.at for f in ctx.faults] + [load_ended])
        deadline = last + DRAIN_AFTER_LAST_FAULT
        open_ = len(ids)
        while time.time() < deadline:
            with contextlib.suppress(Exception):
                open_ = await audit.not_final(PG_URL, system.schema, ids)
            if open_ == 0:
                break
            await asyncio.sleep(0.5)
        log(f"drained: {open_} not final after {time.time() - last:.1f}s")
        await _settle(system)
        ctx.state["dead_letters"] = {
            q: await system.take_dead_letters(q)
            for q in [*(system.step_queue(s) for s in STEPS), system.completed_queue]
        }
        await asyncio.to_thread(system.stop_all)
        db = await audit.read_db(PG_URL, system.schema)
        if scenario.check is not None:
            await scenario.check(ctx, db)
        _count(row, ctx, db)
    except Exception as exc:
        row.problems.append(f"harness error: {type(exc).__name__}: {exc}")
        log(f"{scenario.name} failed: {type(exc).__name__}: {exc}")
    finally:
        if inject_task is not None and not inject_task.done():
            inject_task.cancel()
            with contextlib.suppress(BaseException):
                await inject_task
        await asyncio.to_thread(system.stop_all, 5.0)
        await system.cleanup()
        row.seconds = time.monotonic() - started
    log(f"── {scenario.name} done in {row.seconds:.0f}s: {'clean' if row.clean else 'NOT CLEAN'}")
    return row


async def _start(system: System, scenario: Scenario) -> None:
    for name in ("gateway-a", "gateway-b")[: scenario.gateways]:
        system.add_gateway(name)
    # The first gateway migrates the schema alone; the others start side by side with it.
    first = system.gateways[0]
    system.spawn_gateway(first)
    await system.wait_healthy(first)
    for gateway in system.gateways[1:]:
        system.spawn_gateway(gateway)
    for step in STEPS:
        kind = scenario.image_service if step == "image_processing" else "noop"
        system.spawn_service(system.add_service(step, kind))
    for gateway in system.gateways[1:]:
        await system.wait_healthy(gateway)
    for service in system.services:
        await system.wait_consuming(service)


async def _settle(system: System, timeout: float = 15.0) -> None:
    """Nothing left to send or to handle: outbox empty, work queues empty (bounded)."""
    deadline = time.monotonic() + timeout
    live = {system.step_queue(s) for s in STEPS} | {system.completed_queue}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            backlog = await audit.outbox_backlog(PG_URL, system.schema)
            depths = await system.queue_depths()
            if backlog == 0 and all(depths.get(q, 0) == 0 for q in live):
                break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # the last replies in flight


def _count(row: Row, ctx: Ctx, db: audit.DbState) -> None:
    system, load = ctx.system, ctx.load
    assert load is not None
    ids = set(load.ids)
    row.accepted = len(ids)
    present = {w for w in ids if w in db.workflows}
    row.lost = len(ids - present)
    statuses = {w: db.workflows[w]["status"] for w in present}
    row.completed = sum(1 for s in statuses.values() if s == "completed")
    row.stuck = sum(1 for s in statuses.values() if s not in audit.FINAL)
    ended_badly = {w for w, s in statuses.items() if s in ("failed", "cancelled")}
    row.failed_designed = len(ended_badly & ctx.designed_failures)
    unexpected = ended_badly - ctx.designed_failures
    row.failed_unexpected = len(unexpected)
    for wf in sorted(unexpected)[:3]:
        row.notes.append(f"unexpected {statuses[wf]}: {wf}: {db.workflows[wf]['error']}")

    events = audit.audit_events(db, present)
    row.dup_state = events.duplicated
    row.notes += [f"state: {e}" for e in events.examples]
    effects = audit.audit_effects(system.journals)
    row.dup_effects = effects.duplicated
    row.notes += [f"effect: {e}" for e in effects.examples]

    service_logs = [c.log_path for c in system.children if c.name.startswith("service-")]
    gateway_logs = [c.log_path for c in system.children if c.name.startswith("gateway-")]
    service_events = audit.log_events(service_logs)
    gateway_events = audit.log_events(gateway_logs)
    row.repeats_absorbed = service_events["worker.repeat_answered_from_journal"]

    # Recovery: per fault, to the first completion after it was lifted; the worst fault.
    if ctx.recovery_override is not None:
        row.recovery_s = ctx.recovery_override
    elif ctx.faults:
        worst = 0.0
        for fault in ctx.faults:
            lifted = fault.lifted if fault.lifted is not None else fault.at
            first = audit.first_completion_after(db, present, lifted)
            worst = max(worst, (first if first is not None else lifted) - fault.at)
        row.recovery_s = worst

    extra = set(db.workflows) - ids
    if extra:
        row.problems.append(
            f"{len(extra)} workflows in the database that no client was answered with"
        )
    if load.unanswered:
        row.problems.append(f"{len(load.unanswered)} uploads never answered 202")
    if load.rejected:
        row.problems.append(
            f"{len(load.rejected)} uploads refused: {list(load.rejected.values())[:2]}"
        )
    if load.replay_mismatches:
        row.problems.append(
            f"Idempotency-Key replays answered with another workflow: {load.replay_mismatches[:3]}"
        )
    row.notes.insert(
        0, f"uploads: {load.summary()}; {load.replays} replayed with their key → same workflow"
    )
    if ctx.faults:
        row.notes.insert(
            1,
            "faults: "
            + "; ".join(
                f"{f.kind}{f' ({f.detail})' if f.detail else ''}"
                + (
                    f", whole again after {f.lifted - f.at:.1f}s"
                    if f.lifted and f.lifted > f.at + 0.05
                    else ""
                )
                for f in ctx.faults
            ),
        )
    for queue, letters in ctx.state.get("dead_letters", {}).items():
        if letters:
            reasons = Counter(_UUID.sub("…", d["reason"])[:90] for d in letters)
            row.notes.append(
                f"dead letters in `{queue}.dead`: {len(letters)} — "
                + "; ".join(f"{n}× {r}" for r, n in reasons.most_common(4))
            )
        # A report dead-lettered by an error (not refused by the completion rules) is a lost
        # report; a step message dead-lettered is a lost step (only the deadline brings either
        # back, by running the step again). The duplicate-completions scenario checks its own.
        if queue == system.completed_queue and ctx.scenario != "duplicate_reordered_completions":
            lost = [d for d in letters if not is_refusal_reason(d["reason"])]
            if lost:
                row.problems.append(
                    f"{len(lost)} completions dead-lettered by an error, not refused: reports "
                    f"lost (e.g. {lost[0]['reason'][:120]!r}, message {lost[0]['message_id']})"
                )
        elif queue != system.completed_queue:
            lost = [d for d in letters if d["message_id"] not in MALFORMED_IDS]
            if lost:
                row.problems.append(
                    f"{len(lost)} step messages dead-lettered from `{queue}`: "
                    f"{lost[0]['reason'][:120]!r}"
                )
    interesting = {
        "step.deadline_exceeded": "deadlines passed",
        "outbox.publish_failed": "outbox publish retries",
        "bus.dead_lettered": "dead-lettered (gateway)",
        "http.unhandled_error": "HTTP 500s",
        "completion.refused": "completions refused",
        "sweeper.error": "sweeper errors",
        "outbox.relay_error": "relay errors",
    }
    counted = [
        f"{label} {gateway_events[k]}" for k, label in interesting.items() if gateway_events[k]
    ]
    if counted:
        row.notes.append("gateway logs: " + ", ".join(counted))
    served = [
        f"{k} {service_events[k]}"
        for k in ("worker.step_failed", "bus.handler_failed", "bus.ack_failed", "bus.dead_lettered")
        if service_events[k]
    ]
    if served:
        row.notes.append("service logs: " + ", ".join(served))
    row.notes += ctx.notes
    row.problems += ctx.problems


# -- the suite ------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_suite(
    *,
    reduced: bool = False,
    workflows: int | None = None,
    scenarios: list[str] | None = None,
    workdir: Path | None = None,
    results: list[Path] | None = None,
    seed: int | None = None,
    step_timeout: str = DEFAULT_STEP_TIMEOUT,
) -> list[Row]:
    """Run the scenarios one after the other; returns their rows (also written to `results`)."""
    chosen = [s for s in SCENARIOS if not scenarios or s.name in scenarios]
    unknown = set(scenarios or ()) - {s.name for s in SCENARIOS}
    if unknown:
        raise ValueError(f"unknown scenarios: {sorted(unknown)}")
    for port, name in ((servers.AMQP_PORT, "RabbitMQ"), (servers.PG_PORT, "PostgreSQL")):
        if not servers.port_open(port):
            raise RuntimeError(f"{name} is not reachable on 127.0.0.1:{port}")
    if workflows is None:
        counts = [REDUCED_PER_SCENARIO] * len(chosen) if reduced else split(FULL_TOTAL, len(chosen))
    else:
        counts = split(workflows, len(chosen))
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run_tag = f"chaos_{uuid.uuid4().hex[:6]}"
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"{run_tag}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(
        f"run {run_tag}: {len(chosen)} scenarios, {sum(counts)} workflows, seed {seed}, "
        f"logs in {workdir}"
    )
    started = time.monotonic()
    rows: list[Row] = []
    try:
        for index, (scenario, count) in enumerate(zip(chosen, counts, strict=True), 1):
            rows.append(
                await run_scenario(
                    scenario,
                    index=index,
                    run_tag=run_tag,
                    workflows=count,
                    reduced=reduced,
                    workdir=workdir,
                    rng=random.Random(rng.random()),
                    step_timeout=step_timeout,
                )
            )
    finally:
        procs.stop_all(5.0)
        actions = await servers.ensure_servers_running()
        if actions:
            log(f"servers restarted at the end: {actions}")
        swept = await servers.sweep(AMQP_URL, PG_URL, run_tag)
        log(f"swept leftovers of {run_tag}: {swept}")
    elapsed = time.monotonic() - started
    text = render(
        rows,
        reduced=reduced,
        seed=seed,
        elapsed=elapsed,
        workdir=workdir,
        step_timeout=step_timeout,
    )
    for path in results or ():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    print(text)
    return rows


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(
    rows: list[Row], *, reduced: bool, seed: int, elapsed: float, workdir: Path, step_timeout: str
) -> str:
    """The results table (one row per scenario), then each scenario's notes."""
    head = [
        "Scenario",
        "Faults",
        "Accepted",
        "Completed",
        "Failed as designed",
        "Failed unexpectedly",
        "Lost",
        "Dup. state changes",
        "Dup. effects",
        "Repeats absorbed",
        "Stuck",
        "Recovery (s)",
        "Verdict",
    ]
    lines = [
        f"# Chaos run — {'reduced' if reduced else 'full'}",
        "",
        f"{datetime.now().astimezone().isoformat(timespec='seconds')} · "
        f"{sum(r.accepted for r in rows)} workflows accepted in {len(rows)} scenarios · "
        f"{elapsed / 60:.1f} min · seed {seed} · logs: `{workdir}`",
        "",
        "Definitions: chaos/README.md. One fresh system (exchange, queues, schema) per scenario; "
        f"step deadline {step_timeout}, 5 attempts, retry backoff 200 ms, sweep every 500 ms.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head) - 1)) + "|---|",
    ]
    for r in rows:
        recovery = f"{r.recovery_s:.1f}" if r.recovery_s is not None else "—"
        verdict = "ok" if r.clean else "**FAIL**"
        cells = [
            f"{r.scenario}",
            r.faults,
            r.accepted,
            r.completed,
            r.failed_designed,
            r.failed_unexpected,
            r.lost,
            r.dup_state,
            r.dup_effects,
            r.repeats_absorbed,
            r.stuck,
            recovery,
            verdict,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Notes", ""]
    for r in rows:
        lines.append(f"**{r.scenario}** — {r.title} ({r.seconds:.0f} s)")
        lines.append("")
        for problem in r.problems:
            lines.append(f"- **problem:** {_cell(problem)}")
        for note in r.notes:
            lines.append(f"- {_cell(note)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m chaos.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--workflows",
        type=int,
        help=f"workflows in all, split across the scenarios (full: {FULL_TOTAL})",
    )
    p.add_argument(
        "--reduced",
        action="store_true",
        help=f"few workflows ({REDUCED_PER_SCENARIO} per scenario)",
    )
    p.add_argument(
        "--scenarios", help="comma-separated names: " + ", ".join(s.name for s in SCENARIOS)
    )
    p.add_argument(
        "--workdir", type=Path, help="where logs and journals go (default: a new /tmp folder)"
    )
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--step-timeout",
        default=DEFAULT_STEP_TIMEOUT,
        help=f"deadline of one step attempt, e.g. 5s ({DEFAULT_STEP_TIMEOUT})",
    )
    args = p.parse_args(argv)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    stamp = datetime.now().strftime("%Y-%m-%d_%H%M%S")
    partial = bool(args.scenarios)
    kind = "partial" if partial else "reduced" if args.reduced else "full"
    results = [RESULTS / f"{stamp}-{kind}.md"]
    if not partial:  # latest.md is the table of the last run of every scenario
        results.insert(0, RESULTS / "latest.md")
    try:
        rows = asyncio.run(
            run_suite(
                reduced=args.reduced,
                workflows=args.workflows,
                scenarios=args.scenarios.split(",") if args.scenarios else None,
                workdir=args.workdir,
                results=results,
                seed=args.seed,
                step_timeout=args.step_timeout,
            )
        )
    except KeyboardInterrupt:
        procs.stop_all(5.0)
        print("interrupted; processes stopped, names swept", file=sys.stderr)
        return 130
    return 0 if all(r.clean for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
