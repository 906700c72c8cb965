"""Stox Gateway against Celery, Dramatiq and a raw aio-pika floor, in one run.

    .venv/bin/python bench/run.py                       # full run (10–20 minutes)
    .venv/bin/python bench/run.py --quick               # a couple of minutes
    .venv/bin/python bench/run.py --idle-clients 10000  # gateway RSS with idle WebSockets
    .venv/bin/python bench/run.py --replicas 1,2,4      # total gateway CPU/workflow per R

Writes bench/results/<stamp>.md (+ .json, .png) and latest.md; see bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/run.py`

from bench import cleanup, procs, report
from bench.notify import NoticeServer
from bench.phases import Plan, idle_phase, run_trial
from bench.variants import VARIANTS
from bench.variants.base import Context, slug

RESULTS = Path(__file__).resolve().parent / "results"
QUICK = Plan(n=300, in_flight=200, max_seconds=10.0, latency_n=50, warmup=20, ws_clients=100,
             ws_firehose=5, ws_rate=200.0, ws_seconds=3.0, ws_max_in_flight=50)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N, one repeat, 100 WS clients")
    p.add_argument("--n", type=int, help="workflows in the throughput phase (3000)")
    p.add_argument("--in-flight", type=int, help="workflows in flight in that phase (200)")
    p.add_argument("--max-seconds", type=float,
                   help="no new workflow starts after this long in that phase (60; quick 10)")
    p.add_argument("--latency-n", type=int, help="workflows at W=1 (300)")
    p.add_argument("--warmup", type=int, help="workflows before measuring (100)")
    p.add_argument("--repeats", type=int, help="trials per variant, round-robin (3; quick 1)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--ws-clients", type=int,
                   help="WebSocket clients in the push phase (1000); 0 skips it")
    p.add_argument("--ws-firehose", type=int, help="of which follow every workflow (10)")
    p.add_argument("--ws-rate", type=float, help="workflows/s in the push phase (200)")
    p.add_argument("--ws-seconds", type=float, help="length of each push sub-phase (10)")
    p.add_argument("--retries", type=int, help="runs of a failed trial again (1)")
    p.add_argument("--idle-clients", type=int, default=0,
                   help="instead of the benchmark: gateway RSS with this many idle WebSockets")
    p.add_argument("--idle-hold", type=float, default=35.0, help="seconds to hold them (35)")
    p.add_argument("--idle-no-deflate", action="store_true",
                   help="idle clients do not offer permessage-deflate (browsers do)")
    p.add_argument("--idle-connect-concurrency", type=int, default=10,
                   help="WebSocket handshakes in progress at once while connecting them (10)")
    p.add_argument("--replicas", default="",
                   help="instead of the benchmark: the same load (RabbitMQ + PostgreSQL, 4 "
                        "owners) against R gateways for each R of this list, e.g. 1,2,4; "
                        "--n (2000) and --in-flight (100) apply")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    p.add_argument("--keep-logs", action="store_true", help="keep bench/results/<stamp>.tmp/")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else Plan()
    overrides = {
        "n": args.n, "in_flight": args.in_flight, "max_seconds": args.max_seconds,
        "latency_n": args.latency_n, "retries": args.retries,
        "warmup": args.warmup, "ws_clients": args.ws_clients, "ws_firehose": args.ws_firehose,
        "ws_rate": args.ws_rate, "ws_seconds": args.ws_seconds,
    }
    return replace(plan, **{k: v for k, v in overrides.items() if v is not None})


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


async def facts(ctx: Context, keys: list[str]) -> dict[str, str]:
    import aio_pika
    import asyncpg

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = {
        "machine": f"{cpu}, {procs.psutil.cpu_count()} cores, "
                   f"{procs.psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{n} {_version(n)}" for n in
                              ("stox-gateway", "celery", "kombu", "dramatiq", "pika", "aio-pika",
                               "uvicorn", "websockets", "httpx")),
    }
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.REPO,
                                capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=procs.REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        extra = " + uncommitted changes in src/" if dirty else ""
        out["gateway source"] = f"git {commit}{extra}"
    connection = await aio_pika.connect(ctx.amqp_url, timeout=10)
    props = connection.transport.connection.server_properties  # type: ignore[union-attr]
    out["rabbitmq"] = str(props.get("version", "?"))
    await connection.close()
    if "stox-rmq-pg" in keys:
        conn = await asyncpg.connect(ctx.pg_url.replace("+asyncpg", ""), timeout=10)
        out["postgresql"] = (await conn.fetchval("SHOW server_version")).split()[0]
        await conn.close()
    return out


def _summary_line(t: dict[str, Any]) -> str:
    if not t.get("ok"):
        return f"FAILED: {t.get('error')}"
    tp, lat = t["throughput"], t["latency"]
    cpu = report.METRICS["cpu"](t)
    line = (f"{tp['wf_per_s']:7.0f} wf/s | W=1 p50 {lat['p50_ms']:6.2f} ms "
            f"p99 {lat['p99_ms']:6.2f} ms"
            f" | CPU {cpu:5.2f} ms/wf")
    if "ws" in t:
        ws = t["ws"]
        for name in ("target", "half_capacity"):
            sub = ws.get(name)
            if sub:
                line += (f" | WS {ws['clients']} clients @{sub['wf_per_s']:.0f} wf/s "
                         f"p50 {sub['push_p50_ms']:.1f} p99 {sub['push_p99_ms']:.1f} ms")
    return line


def write_outputs(stamp: str, suffix: str, meta: dict[str, Any], trials: list[dict[str, Any]],
                  idle: dict[str, Any] | None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{stamp}{suffix}"
    latest = f"latest{suffix}"
    text = report.markdown(meta, trials, idle)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{latest}.md").write_text(text)
    raw = json.dumps({"meta": meta, "trials": trials, "idle": idle}, indent=1, default=str)
    (RESULTS / f"{name}.json").write_text(raw)
    if trials and any(t.get("ok") for t in trials):
        report.chart(trials, str(RESULTS / f"{name}.png"), f"Stox benchmark {meta['date']}")
        shutil.copyfile(RESULTS / f"{name}.png", RESULTS / f"{latest}.png")
    print("\n" + text)
    return RESULTS / f"{name}.md"


async def replicas_main(args: argparse.Namespace) -> int:
    from bench import replicas

    counts = [int(c) for c in args.replicas.split(",") if c.strip()]
    plan = replicas.ReplicaPlan()
    plan.n = args.n or plan.n
    plan.in_flight = args.in_flight or plan.in_flight
    now = datetime.now()
    stamp = now.strftime("%Y-%m-%d_%H%M%S")
    tag = f"bench-{now:%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    work_dir = RESULTS / f"{stamp}.tmp"
    work_dir.mkdir(parents=True, exist_ok=True)
    notices = NoticeServer()  # unused here; the context wants one
    ctx = Context(tag, work_dir, notices, args.amqp_url, args.pg_url)
    meta: dict[str, Any] = {"date": now.strftime("%Y-%m-%d %H:%M")}
    results: list[dict[str, Any]] = []
    try:
        meta["facts"] = await facts(ctx, ["stox-rmq-pg"])
        meta["facts"]["plan"] = (f"N={plan.n} per R at W={plan.in_flight} after a warm-up of "
                                 f"{plan.warmup}; {replicas.OWNERS} owners; R = {counts}")
        for count in counts:
            print(f"[replicas] R={count} ...", flush=True)
            result = await replicas.one_count(ctx, f"{tag}.r{count}", count, plan)
            results.append(result)
            print(f"    {json.dumps(result, default=str)[:400]}", flush=True)
    finally:
        await asyncio.to_thread(procs.stop_all)
        swept = await cleanup.sweep(args.amqp_url, args.pg_url, tag, slug(tag))
        print(f"clean-up: {swept}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = replicas.markdown(meta, results)
    (RESULTS / f"{stamp}-replicas.md").write_text(text)
    (RESULTS / "latest-replicas.md").write_text(text)
    (RESULTS / f"{stamp}-replicas.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print("\n" + text)
    if all(r.get("ok") for r in results):
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        print(f"logs kept in {work_dir}")
    return 0 if all(r.get("ok") for r in results) else 1


async def amain(args: argparse.Namespace) -> int:
    if args.replicas:
        return await replicas_main(args)
    plan = make_plan(args)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        print(f"unknown variants: {unknown}; choose from {VARIANTS}", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    now = datetime.now()
    stamp = now.strftime("%Y-%m-%d_%H%M%S")
    suffix = "-idle" if args.idle_clients else ("-quick" if args.quick else "")
    tag = f"bench-{now:%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    work_dir = RESULTS / f"{stamp}.tmp"  # logs, SQLite files (git-ignored: *.tmp)
    work_dir.mkdir(parents=True, exist_ok=True)
    notices = NoticeServer()
    await notices.start()
    ctx = Context(tag, work_dir, notices, args.amqp_url, args.pg_url)
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    trials: list[dict[str, Any]] = []
    idle: dict[str, Any] | None = None
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M"), "mode": "", "plan": asdict(plan)
    }
    failed = False
    try:
        meta["facts"] = await facts(ctx, keys if not args.idle_clients else ["stox-rmq-sqlite"])
        if args.idle_clients:
            meta["mode"] = f"idle WebSocket clients: {args.idle_clients:,}"
            print(f"[idle] {args.idle_clients} idle WebSocket clients on Stox (RabbitMQ, SQLite)")
            idle = await idle_phase(ctx, f"{tag}.idle", args.idle_clients, args.idle_hold,
                                    args.idle_connect_concurrency, not args.idle_no_deflate)
            failed = not idle.get("ok")
        else:
            meta["mode"] = ("quick" if args.quick else "full") + f", {repeats} round(s)"
            meta["facts"]["plan"] = (
                f"throughput N={plan.n} at W={plan.in_flight} (no new start after "
                f"{plan.max_seconds:.0f} s); latency {plan.latency_n} at W=1; "
                f"warm-up {plan.warmup}; WS push {plan.ws_clients} clients "
                f"({plan.ws_firehose} on every workflow) at {plan.ws_rate:.0f} wf/s for "
                f"{plan.ws_seconds:.0f} s; {repeats} round(s), variants interleaved")
            total = repeats * len(keys)
            for rnd in range(1, repeats + 1):
                shift = (rnd - 1) % len(keys)
                for key in keys[shift:] + keys[:shift]:  # rotate: no variant always first
                    print(f"[{len(trials) + 1}/{total}] round {rnd}: {key} ...", flush=True)
                    trial = await run_trial(key, ctx, f"{tag}.{key}.r{rnd}", plan, rnd)
                    trials.append(trial)
                    failed |= not trial.get("ok")
                    print(f"    {_summary_line(trial)}  ({trial['seconds']:.0f} s)", flush=True)
                    (work_dir / "partial.json").write_text(json.dumps(trials, default=str))
    except asyncio.CancelledError:
        print("\ninterrupted: stopping every child and cleaning up ...", file=sys.stderr)
        failed = True
        raise
    finally:
        await asyncio.to_thread(procs.stop_all)
        await notices.stop()
        swept = await cleanup.sweep(args.amqp_url, args.pg_url, tag, slug(tag))
        print(f"clean-up: deleted {swept['queues']} queues, {swept['exchanges']} exchanges, "
              f"{swept['schemas']} schemas left over by tag {tag}", flush=True)
        if trials or idle:
            path = write_outputs(stamp, suffix, meta, trials, idle)
            print(f"written: {path}")
        if failed or args.keep_logs:
            print(f"logs kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_nofile()
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    started = time.monotonic()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            code = runner.run(amain(args))
    except KeyboardInterrupt:
        code = 130
    finally:
        procs.stop_all()
    print(f"total time {time.monotonic() - started:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
