"""What the run left behind, counted: the database, the effects journals, the logs.

Every number of the results table comes from here (see chaos/README.md for the definitions).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from chaos.servers import pg_dsn
from stox_gateway.sdk.journal import read_effects

FINAL = ("completed", "failed", "cancelled")


@dataclass
class DbState:
    workflows: dict[str, dict[str, Any]]  # id → row
    events: dict[str, list[dict[str, Any]]]  # id → events by seq
    steps: dict[str, list[dict[str, Any]]]  # id → steps by position
    outbox_unsent: int


async def read_db(pg_url: str, schema: str) -> DbState:
    conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
    try:
        q = f'"{schema}"'
        workflows = {
            r["id"]: dict(r)
            for r in await conn.fetch(
                f"SELECT id, status, error, seq, product->>'name' AS name, created_at, "
                f"completed_at FROM {q}.workflows"
            )
        }
        events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in await conn.fetch(
            f"SELECT workflow_id, seq, type, data->>'step_id' AS step_id, timestamp "
            f"FROM {q}.workflow_events ORDER BY workflow_id, seq, id"
        ):
            events[r["workflow_id"]].append(dict(r))
        steps: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in await conn.fetch(
            f"SELECT workflow_id, id, type, status, attempts, completed_at, error, "
            f"result->>'chaos' AS completed_by_chaos "
            f"FROM {q}.workflow_steps ORDER BY workflow_id, position"
        ):
            steps[r["workflow_id"]].append(dict(r))
        unsent = int(await conn.fetchval(f"SELECT count(*) FROM {q}.outbox WHERE sent_at IS NULL"))
    finally:
        await conn.close()
    return DbState(workflows, dict(events), dict(steps), unsent)


async def not_final(pg_url: str, schema: str, ids: list[str]) -> int:
    """How many of `ids` are not in a final state (missing ones are not counted here)."""
    conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
    try:
        return int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".workflows '
                "WHERE id = ANY($1::text[]) AND status <> ALL($2::text[])",
                ids,
                list(FINAL),
            )
        )
    finally:
        await conn.close()


async def outbox_backlog(pg_url: str, schema: str) -> int:
    conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
    try:
        return int(
            await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL')
        )
    finally:
        await conn.close()


async def running_by_step(pg_url: str, schema: str) -> dict[str, int]:
    conn = await asyncpg.connect(pg_dsn(pg_url), timeout=15)
    try:
        rows = await conn.fetch(
            f'SELECT type, count(*) AS n FROM "{schema}".workflow_steps '
            "WHERE status = 'running' AND started_at <= now() GROUP BY type"
        )
    finally:
        await conn.close()
    return {r["type"]: int(r["n"]) for r in rows}


@dataclass
class StateAudit:
    duplicated: int = 0  # state changes applied twice, or seq gaps / repeats
    examples: list[str] = field(default_factory=list)


def audit_events(db: DbState, ids: Iterable[str]) -> StateAudit:
    """Per workflow: seq 1..n without gap or repeat, n = workflows.seq; per step at most one
    `step_completed`; at most one final event."""
    audit = StateAudit()
    for wf in ids:
        events = db.events.get(wf, [])
        row = db.workflows.get(wf)
        if row is None:
            continue
        seqs = [e["seq"] for e in events]
        problems = []
        if seqs != list(range(1, len(seqs) + 1)):
            repeats = len(seqs) - len(set(seqs))
            gaps = len(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            problems.append(f"seq repeats {repeats} gaps {gaps}")
        if seqs and seqs[-1] != row["seq"]:
            problems.append(f"last event seq {seqs[-1]} != workflow seq {row['seq']}")
        completions = Counter(e["step_id"] for e in events if e["type"] == "step_completed")
        twice = sum(n - 1 for n in completions.values() if n > 1)
        if twice:
            problems.append(f"{twice} step_completed applied again")
        finals = sum(
            1
            for e in events
            if e["type"] in ("workflow_completed", "workflow_failed", "workflow_cancelled")
        )
        if finals > 1:
            problems.append(f"{finals} final events")
        if problems:
            audit.duplicated += 1
            if len(audit.examples) < 5:
                audit.examples.append(f"{wf}: {'; '.join(problems)}")
    return audit


@dataclass
class EffectsAudit:
    effects: int = 0
    duplicated: int = 0  # (workflow, step) with more than one successful effect
    examples: list[str] = field(default_factory=list)


def audit_effects(journals: Iterable[Path]) -> EffectsAudit:
    audit = EffectsAudit()
    successes: Counter[tuple[str, str]] = Counter()
    attempts: dict[tuple[str, str], list[int]] = defaultdict(list)
    seen: Counter[tuple[str, str, int]] = Counter()
    for path in journals:
        for effect in read_effects(path):
            audit.effects += 1
            seen[(effect.workflow_id, effect.step_id, effect.attempt)] += 1
            if effect.success:
                successes[(effect.workflow_id, effect.step_id)] += 1
                attempts[(effect.workflow_id, effect.step_id)].append(effect.attempt)
    twice = [k for k, n in successes.items() if n > 1]
    handled_twice = [k for k, n in seen.items() if n > 1]  # the primary key forbids it
    audit.duplicated = len(twice) + len(handled_twice)
    for wf, step in twice[:5]:
        audit.examples.append(
            f"{wf} step {step}: successful attempts {sorted(attempts[(wf, step)])}"
        )
    for key in handled_twice[:5]:
        audit.examples.append(f"{key}: handled {seen[key]} times")
    return audit


def log_events(paths: Iterable[Path]) -> Counter[str]:
    """`event` of every JSON log line, counted."""
    counted: Counter[str] = Counter()
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if isinstance(event, str):
                counted[event] += 1
    return counted


def log_lines(paths: Iterable[Path], event: str) -> list[dict[str, Any]]:
    found = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if event in line and line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
    return found


def first_completion_after(db: DbState, ids: Iterable[str], after: float) -> float | None:
    """Wall time of the first workflow completion committed at or after `after`."""
    best: float | None = None
    for wf in ids:
        row = db.workflows.get(wf)
        if row is None or row["status"] != "completed" or row["completed_at"] is None:
            continue
        at = _ts(row["completed_at"])
        if at >= after and (best is None or at < best):
            best = at
    return best


def _ts(moment: datetime) -> float:
    return moment.timestamp()
