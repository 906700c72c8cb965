"""The bench's verdicts for issue 13: progress on against off, in one run."""

from __future__ import annotations

from typing import Any

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


def test_push_p99_within_a_quarter_of_the_off_median_or_its_worst_trial_is_met() -> None:
    verdicts = _verdicts(on_p99=24.9, on_tp=280)
    assert (
        verdicts[
            "Stox embedded, no-op services: WS push p99 at half capacity, progress on within noise of off"
        ]
        == "met"
    )
    assert (
        verdicts["Stox embedded, no-op services: throughput with progress on ≥ 0.9× off"] == "met"
    )


def test_push_p99_beyond_the_noise_or_a_tenth_less_throughput_is_missed() -> None:
    verdicts = _verdicts(on_p99=25.1, on_tp=269)
    assert (
        verdicts[
            "Stox embedded, no-op services: WS push p99 at half capacity, progress on within noise of off"
        ]
        == "missed"
    )
    assert (
        verdicts["Stox embedded, no-op services: throughput with progress on ≥ 0.9× off"]
        == "missed"
    )
