"""Outbox rows handed from the commit to the relay in memory, so the relay need not read them.

A row is written to the outbox table in the transaction of the change that caused it, and the
table stays the truth: whatever a crash leaves unsent, a claim from the table sends. But the
relay of the process that committed a row already holds it, so reading it back (a thread
hand-off and a query per relay batch on SQLite) only added latency to every step.

After a commit, the store offers the rows that are already due here; the relay's next claim
takes them from memory. A claim from the table runs first, then at least every
`table_claim_interval` seconds, and again at once while the table's claims come back full, so
rows this process did not commit (a crashed run's, the operator CLI's, a retry whose backoff
has passed) are never starved. In between, a claim with nothing handed over reads nothing: a
read of the table after every batch sent, in front of the next completion's commit on
SQLite's one thread, cost every step a millisecond.

No row is sent twice by this process: every id claimed (from memory or the table) is kept in
`_claimed` until its claim is given back unsent; a row whose id is there is skipped by both
paths. That is also what lets SQLite mark rows sent lazily, with the engine's next batch: the
table may still say "unsent" for a moment, but this process will not claim the row again.
Between processes nothing changes: PostgreSQL claims lease rows (`claimed_until`, taken with
`FOR UPDATE SKIP LOCKED`), rows from memory included.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime

from stox_gateway.store.port import OutboxRow


class OutboxHandoff:
    def __init__(
        self,
        *,
        capacity: int = 10_000,
        remembered: int = 20_000,
        table_claim_interval: float = 0.25,
    ) -> None:
        # Beyond `capacity` (the relay is stalled: the broker is away) new rows are left to
        # the table claims. `remembered` claimed ids (~100 bytes each) cover far longer than
        # a row waits here (milliseconds) or a lazy mark waits for its commit (≤ 50 ms).
        self._capacity = capacity
        self._remembered = remembered
        self._interval = table_claim_interval
        self._ready: OrderedDict[int, OutboxRow] = OrderedDict()  # committed here, due
        self._claimed: OrderedDict[int, None] = OrderedDict()  # oldest first
        self._last_table_claim: datetime | None = None  # the claim's `now`; None: never
        self._table_due = False  # the last table claim came back full, or rows were given back

    def __len__(self) -> int:
        return len(self._ready)

    def offer(self, rows: Iterable[OutboxRow]) -> None:
        """Rows just committed and already due (the caller checks `available_at`)."""
        for row in rows:
            if len(self._ready) >= self._capacity:
                return
            if row.id not in self._claimed:
                self._ready[row.id] = row

    def take(self, limit: int, now: datetime) -> list[OutboxRow] | None:
        """Up to `limit` handed-over rows (maybe none), or None when it is the table's turn.

        Time is the claim's `now` (the relay's clock), so a claim for a later moment reads
        the table for what has become due by then.
        """
        last = self._last_table_claim
        if (
            self._table_due
            or last is None
            or not 0 <= (now - last).total_seconds() < self._interval
        ):
            return None
        taken: list[OutboxRow] = []
        while self._ready and len(taken) < limit:
            _, row = self._ready.popitem(last=False)
            if row.id not in self._claimed:
                taken.append(row)
        self._claim(row.id for row in taken)
        return taken

    def from_table(self, rows: Sequence[OutboxRow], limit: int, now: datetime) -> list[OutboxRow]:
        """The rows of a claim of up to `limit` from the table (as of `now`) that this process
        has not claimed already."""
        self._last_table_claim = now
        self._table_due = len(rows) >= limit
        fresh = [row for row in rows if row.id not in self._claimed]
        for row in rows:
            self._ready.pop(row.id, None)
        self._claim(row.id for row in fresh)
        return fresh

    def release(self, ids: Iterable[int]) -> None:
        """Claims given back unsent (a failed publish or mark): claimable again, from the
        table, where they still are."""
        for row_id in ids:
            if row_id in self._claimed:
                del self._claimed[row_id]
                self._table_due = True

    def _claim(self, ids: Iterable[int]) -> None:
        for row_id in ids:
            self._claimed[row_id] = None
        while len(self._claimed) > self._remembered:
            self._claimed.popitem(last=False)
