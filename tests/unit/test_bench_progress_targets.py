"""The bench's verdicts for issue 13: progress on against off, in one run."""

from __future__ import annotations

from typing import Any

import pytest
from bench import report


def _stat(median: float, lo: float, hi: float) -> dict[str, float]:
    return {"median": median, "min": lo, "max": hi, "n": 3}


def _verdicts(on_p99: float, on_tp: float) -> dict[str, str]:
    table: dict[str, dict[str, Any]] = {
        "stox-embedded": {"throughput": _stat(300, 290, 310), "ws_half_p99": _stat(20, 18, 22)},
        "stox-embedded-progress": {
            "throughput": _stat(on_tp, on_tp, on_tp),
            "ws_half_p99": _stat(on_p99, on_p99, on_p99),
        },
    }
    rows: list[tuple[str, str, str]] = []

    def check(
        name: str,
        value: float | None,
        limit: float | None,
        higher: bool,
        unit: str,
        shown: Any = None,
    ) -> None:
        if value is None or limit is None:
            rows.append((name, "not measured", "—"))
        else:
            rows.append((name, f"{value}", "met" if (value >= limit) == higher else "missed"))

    report._progress_targets(table, check)
    return {name.split(" (")[0]: verdict for name, _, verdict in rows if "embedded, no-op" in name}


PUSH = (
    "Stox embedded, no-op services: WS push p99 at half capacity, progress on within noise of off"
)
THROUGHPUT = "Stox embedded, no-op services: throughput with progress on ≥ 0.9× off"


@pytest.mark.parametrize(
    ("on_p99", "on_tp", "verdict"),
    [
        (24.9, 280, "met"),  # within a quarter of the off median (20 ms), a tenth of 300 wf/s
        (25.1, 269, "missed"),  # just beyond both
    ],
)
def test_the_push_and_throughput_verdicts_follow_their_limits(
    on_p99: float, on_tp: float, verdict: str
) -> None:
    verdicts = _verdicts(on_p99=on_p99, on_tp=on_tp)
    assert verdicts[PUSH] == verdict
    assert verdicts[THROUGHPUT] == verdict
