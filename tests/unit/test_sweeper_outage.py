"""The sweeper through a database restart: one warning a round, and it keeps sweeping."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.sweeper import DeadlineSweeper
from tests.support import capture_logs


class AwayThenBack:
    """An engine whose database is away for the first two rounds."""

    def __init__(self) -> None:
        self.rounds = 0

    async def time_out_due(self, now: datetime, limit: int) -> Any:
        self.rounds += 1
        if self.rounds <= 2:
            raise Unavailable("database unavailable: ConnectionRefusedError")
        return type("Swept", (), {"transitions": [], "claimed": 0})()


async def test_a_database_outage_is_one_line_a_round_and_the_sweeper_goes_on() -> None:
    engine = AwayThenBack()
    sweeper = DeadlineSweeper(None, engine, interval=0.01)  # type: ignore[arg-type]
    with capture_logs() as logs:
        await sweeper.start()
        for _ in range(200):
            if engine.rounds >= 4:
                break
            await asyncio.sleep(0.01)
        await sweeper.stop()
    assert engine.rounds >= 4
    events = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert [e["event"] for e in events] == ["sweeper.database_unavailable"] * 2
    assert all("exc_info" not in e for e in events)
