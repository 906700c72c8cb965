"""The effects journal: what a service did, by workflow, step and attempt.

A step message can arrive twice (a redelivery after a crash before the ack, an outbox row sent
again). The journal makes the handler's work exactly-once in effect: the outcome of an attempt
is recorded once (a primary key), and a repeat of that attempt is answered from the journal
without running the handler again. It is a SQLite file, so the processes of one service on one
machine can share it; it also lets tests and the chaos suite count effects.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stox_gateway import codec
from stox_gateway.sdk.context import StepContext

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    workflow_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    step_type TEXT NOT NULL,
    success INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    pid INTEGER NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (workflow_id, step_id, attempt)
)
"""


@dataclass(frozen=True, slots=True)
class Effect:
    workflow_id: str
    step_id: str
    attempt: int
    step_type: str
    success: bool
    outcome: dict[str, Any]
    pid: int


class EffectsJournal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a recorded effect survives a crash of the process (not of the
        # machine), at a fraction of the cost of an fsync per step.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._lock = asyncio.Lock()

    async def recorded(self, ctx: StepContext) -> dict[str, Any] | None:
        """The outcome recorded for this attempt, if it was handled before."""
        async with self._lock:
            row = await asyncio.to_thread(
                self._db.execute(
                    "SELECT outcome FROM effects WHERE workflow_id=? AND step_id=? AND attempt=?",
                    (ctx.workflow_id, ctx.step_id, ctx.attempt),
                ).fetchone
            )
        return dict(codec.loads(row[0])) if row else None

    async def record(self, ctx: StepContext, success: bool, outcome: dict[str, Any]) -> bool:
        """Record the outcome; False when this attempt was already on record (a race)."""
        import os

        async with self._lock:
            cursor = await asyncio.to_thread(
                self._db.execute,
                "INSERT OR IGNORE INTO effects "
                "(workflow_id, step_id, attempt, step_type, success, outcome, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    ctx.workflow_id,
                    ctx.step_id,
                    ctx.attempt,
                    ctx.step_type,
                    int(success),
                    codec.dumps_str(outcome),
                    os.getpid(),
                ),
            )
        return bool(cursor.rowcount)

    def close(self) -> None:
        self._db.close()


def read_effects(path: Path) -> list[Effect]:
    """Every effect in a journal (tests, the chaos suite, audits)."""
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute(
            "SELECT workflow_id, step_id, attempt, step_type, success, outcome, pid FROM effects"
        ).fetchall()
    finally:
        db.close()
    return [Effect(r[0], r[1], r[2], r[3], bool(r[4]), dict(codec.loads(r[5])), r[6]) for r in rows]
