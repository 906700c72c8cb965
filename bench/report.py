"""Aggregate trials into the Markdown table (medians, min–max, ratios to Celery) and a chart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any

from bench.variants import BASELINE, LABELS, VARIANTS

MiB = 1024 * 1024
SHORT = {
    "stox-rmq-sqlite": "Stox\nRabbitMQ\nSQLite",
    "stox-rmq-pg": "Stox\nRabbitMQ\nPostgreSQL",
    "stox-embedded": "Stox\nembedded",
    "stox-rmq-sqlite-progress": "Stox\nRabbitMQ\n+progress",
    "stox-embedded-progress": "Stox\nembedded\n+progress",
    "stox-embedded-ref": "Stox\nreference\nservices",
    "stox-embedded-ref-quiet": "Stox\nreference\nno progress",
    "celery": "Celery\nchain",
    "dramatiq": "Dramatiq\npipeline",
    "raw-aio-pika": "raw\naio-pika",
    "dbos-sqlite": "DBOS\nSQLite",
    "dbos-pg": "DBOS\nPostgreSQL",
}
Trial = dict[str, Any]


def _values(trials: Iterable[Trial], get: Callable[[Trial], Any]) -> list[float]:
    out = []
    for trial in trials:
        try:
            value = get(trial)
        except (KeyError, TypeError):
            continue
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append(float(value))
    return out


def stat(trials: Iterable[Trial], get: Callable[[Trial], Any]) -> dict[str, float] | None:
    values = _values(trials, get)
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def _fmt(value: float, digits: int) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def cell(s: dict[str, float] | None, digits: int = 1) -> str:
    if s is None:
        return "—"
    text = _fmt(s["median"], digits)
    if s["n"] > 1:
        text += f" ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"
    return text


def ratio(s: dict[str, float] | None, base: dict[str, float] | None) -> str:
    if s is None or base is None or base["median"] == 0:
        return "—"
    return f"{s['median'] / base['median']:.2f}×"


METRICS: dict[str, Callable[[Trial], Any]] = {
    "throughput": lambda t: t["throughput"]["wf_per_s"],
    "p50": lambda t: t["latency"]["p50_ms"],
    "p99": lambda t: t["latency"]["p99_ms"],
    "cpu": lambda t: sum(v for k, v in t["cpu_ms_per_wf"].items() if _is_service(k)),
    "client_cpu": lambda t: t["cpu_ms_per_wf"]["harness (load client)"],
    "broker_cpu": lambda t: t["cpu_ms_per_wf"]["rabbitmq (broker)"],
    "gateway_rss": lambda t: t["gateway_peak_rss"] / MiB,
    "server_rss": lambda t: t["server_peak_rss"] / MiB,
    "ws_p50": lambda t: t["ws"]["target"]["push_p50_ms"],
    "ws_p99": lambda t: t["ws"]["target"]["push_p99_ms"],
    "ws_max": lambda t: t["ws"]["target"]["push_max_ms"],
    "ws_rate": lambda t: t["ws"]["target"]["wf_per_s"],
    "ws_cpu": lambda t: t["ws"]["target"]["gateway_cpu_pct"],
    "ws_half_p50": lambda t: t["ws"]["half_capacity"]["push_p50_ms"],
    "ws_half_p99": lambda t: t["ws"]["half_capacity"]["push_p99_ms"],
    "ws_half_max": lambda t: t["ws"]["half_capacity"]["push_max_ms"],
    "ws_half_rate": lambda t: t["ws"]["half_capacity"]["wf_per_s"],
    "ws_half_cpu": lambda t: t["ws"]["half_capacity"]["gateway_cpu_pct"],
    "ws_clients": lambda t: t["ws"]["gateway_clients"],
    "ws_rss": lambda t: t["ws"]["gateway_peak_rss"] / MiB,
    "measured_n": lambda t: t["throughput"]["finished"],
    "other_cores": lambda t: t["noise"]["other_cores"],
    "cpu_pressure": lambda t: 100 * t["noise"]["cpu_pressure"],
    "client_push_p50": lambda t: t["client_push"]["p50_ms"],
    "client_push_p99": lambda t: t["client_push"]["p99_ms"],
}


def _is_service(name: str) -> bool:
    return not name.startswith(("harness", "rabbitmq", "postgresql"))


def aggregate(trials: list[Trial]) -> dict[str, dict[str, Any]]:
    """variant → metric → stat, over the trials that succeeded."""
    table: dict[str, dict[str, Any]] = {}
    for key in VARIANTS:
        mine = [t for t in trials if t["variant"] == key]
        if not mine:
            continue
        good = [t for t in mine if t.get("ok")]
        row: dict[str, Any] = {name: stat(good, get) for name, get in METRICS.items()}
        row["trials"], row["failed"] = len(mine), len(mine) - len(good)
        processes: dict[str, dict[str, float] | None] = {}
        for trial in good:
            for name in trial.get("cpu_ms_per_wf", {}):
                processes[name] = None
        for name in processes:
            processes[name] = stat(good, lambda t, n=name: t["cpu_ms_per_wf"].get(n))
        row["processes"] = processes
        table[key] = row
    return table


def targets(
    table: dict[str, dict[str, Any]], idle: dict[str, Any] | None
) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows."""
    rows: list[tuple[str, str, str]] = []
    base = table.get(BASELINE, {})

    def median(key: str, metric: str) -> float | None:
        s = table.get(key, {}).get(metric)
        return s["median"] if s else None

    def check(name: str, value: float | None, limit: float | None, higher: bool, unit: str,
              shown: Callable[[float], str] | None = None) -> None:
        if value is None or limit is None:
            rows.append((name, "not measured", "—"))
            return
        ok = value >= limit if higher else value <= limit
        text = shown(value) if shown else f"{value:.2f}{unit}"
        rows.append((name, text, "met" if ok else "**missed**"))

    celery_tp, celery_p50, celery_p99 = (median(BASELINE, m) for m in ("throughput", "p50", "p99"))
    dramatiq_tp = median("dramatiq", "throughput")
    sqlite_tp = median("stox-rmq-sqlite", "throughput")
    if base:
        check("Stox RabbitMQ+SQLite throughput ≥ 2× Celery",
              sqlite_tp / celery_tp if sqlite_tp and celery_tp else None, 2.0, True, "×")
        check("Stox RabbitMQ+SQLite throughput ≥ 1× Dramatiq",
              sqlite_tp / dramatiq_tp if sqlite_tp and dramatiq_tp else None, 1.0, True, "×")
        p50, p99 = median("stox-rmq-sqlite", "p50"), median("stox-rmq-sqlite", "p99")
        check("Stox RabbitMQ+SQLite W=1 p50 ≤ 2× Celery",
              p50 / celery_p50 if p50 and celery_p50 else None, 2.0, False, "×")
        check("Stox RabbitMQ+SQLite W=1 p99 ≤ 2× Celery",
              p99 / celery_p99 if p99 and celery_p99 else None, 2.0, False, "×")
        emb = median("stox-embedded", "throughput")
        check("Stox embedded throughput ≥ 4× Celery",
              emb / celery_tp if emb and celery_tp else None, 4.0, True, "×")
    _store_targets(median, check)
    _progress_targets(table, check)
    ws = table.get("stox-rmq-sqlite", {})
    ws_p99 = ws.get("ws_p99")
    clients = ws.get("ws_clients")
    rate = ws.get("ws_rate")
    label = "WS push p99 ≤ 50 ms, 1,000 clients at 200 wf/s (Stox RabbitMQ+SQLite)"
    if ws_p99 and clients and rate:
        label += f" — measured with {clients['median']:.0f} clients at {rate['median']:.0f} wf/s"
    check(label, ws_p99["median"] if ws_p99 else None, 50.0, False, " ms")
    if idle is not None and idle.get("ok"):
        rss = idle.get("gateway_peak_rss", 0) / MiB
        check(f"{idle['clients']:,} idle WS clients → gateway RSS ≤ 1 GiB", rss, 1024.0, False,
              " MiB", lambda v: f"{v:,.0f} MiB peak")
    else:
        rows.append(("10,000 idle WS clients → gateway RSS ≤ 1 GiB",
                     "run `bench/run.py --idle-clients 10000`", "—"))
    return rows


def _store_targets(median: Callable[[str, str], float | None], check: Callable[..., None]) -> None:
    """Issue 16's targets: PostgreSQL against the SQLite row and DBOS, embedded against Celery,
    RabbitMQ + SQLite against the raw floor (same-run ratios)."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    pg_p50, sq_p50 = median("stox-rmq-pg", "p50"), median("stox-rmq-sqlite", "p50")
    pg_tp, sq_tp = median("stox-rmq-pg", "throughput"), median("stox-rmq-sqlite", "throughput")
    dbos_p50, dbos_tp = median("dbos-pg", "p50"), median("dbos-pg", "throughput")
    check("Stox RabbitMQ+PostgreSQL W=1 p50 ≤ 1.3× the SQLite row", ratio(pg_p50, sq_p50),
          1.3, False, "×")
    check("Stox RabbitMQ+PostgreSQL W=1 p50 ≤ DBOS on PostgreSQL", ratio(pg_p50, dbos_p50),
          1.0, False, "×")
    check("Stox RabbitMQ+PostgreSQL throughput ≥ the SQLite row", ratio(pg_tp, sq_tp),
          1.0, True, "×")
    check("Stox RabbitMQ+PostgreSQL throughput ≥ 2× DBOS on PostgreSQL", ratio(pg_tp, dbos_tp),
          2.0, True, "×")
    emb_tp, emb_p50 = median("stox-embedded", "throughput"), median("stox-embedded", "p50")
    celery_tp, celery_p50 = median(BASELINE, "throughput"), median(BASELINE, "p50")
    check("Stox embedded throughput ≥ 1.5× Celery", ratio(emb_tp, celery_tp), 1.5, True, "×")
    check("Stox embedded W=1 p50 ≤ Celery's", ratio(emb_p50, celery_p50), 1.0, False, "×")
    check("Stox RabbitMQ+SQLite throughput ≥ 0.7× the raw aio-pika floor",
          ratio(sq_tp, median("raw-aio-pika", "throughput")), 0.7, True, "×")


def _progress_targets(table: dict[str, dict[str, Any]], check: Callable[..., None]) -> None:
    """Issue 13: live progress costs at most a tenth of the throughput, and the push p99 at half
    capacity (1,000 clients) is unchanged within noise: the progress row's median at most the
    off row's worst trial or 1.25× its median, whichever is higher. Measured with the
    reference services (the issue's own measure) and, as a stress case, with no-op services
    that each send 3 reports (where progress is most of what a step does)."""
    pairs = (
        ("stox-embedded-ref", "stox-embedded-ref-quiet", "embedded, reference services"),
        ("stox-rmq-sqlite-progress", "stox-rmq-sqlite", "RabbitMQ+SQLite, no-op services"),
        ("stox-embedded-progress", "stox-embedded", "embedded, no-op services"),
    )
    for on_key, off_key, name in pairs:
        tp_on, tp_off = (table.get(k, {}).get("throughput") for k in (on_key, off_key))
        check(f"Stox {name}: throughput with progress on ≥ 0.9× off",
              tp_on["median"] / tp_off["median"] if tp_on and tp_off else None, 0.9, True, "×")
    for on_key, off_key, name in pairs:
        p99_on, p99_off = (table.get(k, {}).get("ws_half_p99") for k in (on_key, off_key))
        label = f"Stox {name}: WS push p99 at half capacity, progress on within noise of off"
        limit = None
        if p99_off:
            limit = max(p99_off["max"], 1.25 * p99_off["median"])
            label += f" (off {p99_off['median']:.1f} ms: limit {limit:.1f} ms)"
        check(label, p99_on["median"] if p99_on else None, limit, False, " ms")

def markdown(meta: dict[str, Any], trials: list[Trial], idle: dict[str, Any] | None) -> str:
    table = aggregate(trials)
    base = table.get(BASELINE, {})
    out: list[str] = [f"# Stox Gateway benchmark — {meta['date']} ({meta['mode']})", ""]
    out += [f"- {k}: {v}" for k, v in meta["facts"].items()]
    out.append("")
    if table:
        out += _main_table(table, base, meta)
        out += _cpu_table(table)
        out += _ws_table(table)
    if idle is not None:
        out += _idle_section(idle)
    out += ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in targets(table, idle)]
    out.append("")
    failures = [t for t in trials if not t.get("ok")]
    if failures:
        out += ["## Failed trials", ""]
        for t in failures:
            out.append(f"- {t['label']} round {t['round']}: {t.get('error', '?')}")
        out.append("")
    return "\n".join(out)


def _main_table(table: dict[str, Any], base: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    plan = meta["plan"]
    out = [
        "## Throughput, latency, CPU",
        "",
        f"Median over the successful trials, (min–max) when more than one. Throughput: "
        f"{plan['n']:,} workflows with {plan['in_flight']} in flight, or as many as started "
        f"within {plan['max_seconds']:.0f} s (finished / time from first start to last "
        f"completion; the count is in the next table). Latency: "
        f"{plan['latency_n']} workflows one at a time (W=1), submit → completion seen by the "
        f"client. CPU: all service processes of the variant (not the broker, not the load "
        f"client), ms per workflow in the throughput phase. × Celery: this row's median over "
        f"Celery's (throughput: higher is better; latency and CPU: lower is better).",
        "",
        "| system | throughput wf/s | × Celery | W=1 p50 ms | × Celery | W=1 p99 ms | × Celery "
        "| CPU ms/wf | × Celery | gateway peak RSS MiB | trials ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in table.items():
        out.append(
            f"| {LABELS[key]} | {cell(row['throughput'], 0)} "
            f"| {ratio(row['throughput'], base.get('throughput'))} "
            f"| {cell(row['p50'], 2)} | {ratio(row['p50'], base.get('p50'))} "
            f"| {cell(row['p99'], 2)} | {ratio(row['p99'], base.get('p99'))} "
            f"| {cell(row['cpu'], 2)} | {ratio(row['cpu'], base.get('cpu'))} "
            f"| {cell(row['gateway_rss'], 0)} | {row['trials'] - row['failed']}/{row['trials']} |"
        )
    out.append("")
    return out


def _cpu_table(table: dict[str, Any]) -> list[str]:
    out = [
        "## CPU per workflow by process (ms, throughput phase)",
        "",
        "Broker and database server CPU are whole-server numbers (anything else using them "
        "on this machine counts too). Peak RSS: the sum of the variant's processes' VmHWM. "
        "Other load: CPU used by processes outside this benchmark during the phase (the "
        "machine is shared); CPU pressure: share of the time some task waited for a CPU (PSI).",
        "",
        "| system | service processes | load client | RabbitMQ | PostgreSQL | peak RSS MiB "
        "(all services) | workflows measured | other load on the machine, cores | CPU pressure % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in table.items():
        procs = row["processes"]
        services = " · ".join(
            f"{name} {cell(s, 2)}" for name, s in procs.items() if _is_service(name)
        )
        out.append(
            f"| {LABELS[key]} | {services} | {cell(procs.get('harness (load client)'), 2)} "
            f"| {cell(procs.get('rabbitmq (broker)'), 2)} "
            f"| {cell(procs.get('postgresql (server)'), 2)} "
            f"| {cell(row['server_rss'], 0)} | {cell(row['measured_n'], 0)} "
            f"| {cell(row['other_cores'], 2)} | {cell(row['cpu_pressure'], 0)} |"
        )
    out.append("")
    return out


def _ws_table(table: dict[str, Any]) -> list[str]:
    rows = [(k, r) for k, r in table.items() if r.get("ws_p99") or r.get("ws_half_p99")]
    if not rows:
        return []
    out = [
        "## WebSocket push latency",
        "",
        "From the `timestamp` of `workflow_completed` (set by the gateway in the committing "
        "transaction) to its arrival at a client, in a separate client process. Clients: a few "
        "follow every workflow (they take the samples), the rest each follow one finished "
        "workflow (`?workflow_id=`): connected, idle, but part of every fan-out. Load: uploads "
        "paced at the target rate, then at half of what the gateway achieved there with the "
        "clients connected (so a gateway below the target is also measured without a "
        "backlog).",
        "",
        "| system | clients | at target: achieved wf/s | push p50 ms | push p99 ms | max ms "
        "| gateway CPU % | at half capacity: wf/s | push p50 ms | push p99 ms | gateway CPU % "
        "| gateway peak RSS MiB | load client's own push p50 / p99 at W=200, ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in rows:
        out.append(
            f"| {LABELS[key]} | {cell(row['ws_clients'], 0)} | {cell(row['ws_rate'], 0)} "
            f"| {cell(row['ws_p50'], 1)} | {cell(row['ws_p99'], 1)} | {cell(row['ws_max'], 0)} "
            f"| {cell(row['ws_cpu'], 0)} | {cell(row['ws_half_rate'], 0)} "
            f"| {cell(row['ws_half_p50'], 1)} | {cell(row['ws_half_p99'], 1)} "
            f"| {cell(row['ws_half_cpu'], 0)} | {cell(row['ws_rss'], 0)} "
            f"| {cell(row['client_push_p50'], 0)} / {cell(row['client_push_p99'], 0)} |"
        )
    out.append("")
    return out


def _idle_section(idle: dict[str, Any]) -> list[str]:
    deflate = "with" if idle.get("deflate", True) else "without"
    out = [f"## {idle['clients']:,} idle WebSocket clients ({idle['label']}, clients {deflate} "
           f"permessage-deflate)", ""]
    if not idle.get("ok"):
        return [*out, f"Failed: {idle.get('error')}", ""]
    fleet = idle.get("fleet", {})
    mib = lambda key: f"{idle.get(key, 0) / MiB:,.0f}"  # noqa: E731
    per_client = (idle.get("rss_hold_max", 0) - idle.get("rss_before", 0)) / max(
        1, fleet.get("connected", 1))
    out += [
        "| gateway RSS before | connected | max while held | peak (VmHWM) | per client | "
        "clients seen by gateway | still open at end | connect time s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {mib('rss_before')} MiB | {mib('rss_connected')} MiB | {mib('rss_hold_max')} MiB "
        f"| {mib('gateway_peak_rss')} MiB | {per_client / 1024:,.0f} KiB "
        f"| {idle.get('gateway_clients_end')} | {fleet.get('open_at_stop')}/{fleet.get('planned')} "
        f"| {fleet.get('connect_seconds', 0):.0f} |",
        "",
    ]
    return out


def chart(trials: list[Trial], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = aggregate(trials)
    keys = [k for k in VARIANTS if k in table]
    labels = [SHORT[k] for k in keys]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))

    def bars(ax: Any, metric: str, offset: float, width: float, name: str, color: str) -> None:
        med, lo, hi = [], [], []
        for k in keys:
            s = table[k].get(metric)
            med.append(s["median"] if s else 0)
            lo.append(s["median"] - s["min"] if s else 0)
            hi.append(s["max"] - s["median"] if s else 0)
        xs = [i + offset for i in range(len(keys))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=name, color=color)
        for x, m in zip(xs, med, strict=True):
            if m:
                ax.annotate(f"{m:.0f}" if m >= 10 else f"{m:.1f}", (x, m), ha="center",
                            va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")

    ax = axes[0]
    bars(ax, "throughput", 0, 0.6, "throughput", "tab:blue")
    ax.set_title("Throughput (W=200), workflows/s — higher is better")
    ax = axes[1]
    bars(ax, "p50", -0.2, 0.4, "p50", "tab:green")
    bars(ax, "p99", 0.2, 0.4, "p99", "tab:red")
    ax.set_title("End-to-end latency at W=1, ms — lower is better")
    ax.legend()
    ax = axes[2]
    bars(ax, "cpu", -0.2, 0.4, "services", "tab:purple")
    bars(ax, "broker_cpu", 0.2, 0.4, "RabbitMQ", "tab:gray")
    ax.set_title("CPU per workflow, ms — lower is better")
    ax.legend()
    for ax in axes:
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """`python -m bench.report RESULT.json`: write RESULT.md and RESULT.png again."""
    import json
    import sys
    from pathlib import Path

    path = Path(sys.argv[1])
    raw = json.loads(path.read_text())
    text = markdown(raw["meta"], raw["trials"], raw.get("idle"))
    path.with_suffix(".md").write_text(text)
    if raw["trials"]:
        chart(raw["trials"], str(path.with_suffix(".png")), f"Stox benchmark {raw['meta']['date']}")
    print(text)


if __name__ == "__main__":
    main()
