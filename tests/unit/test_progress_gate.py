"""The progress rate gate (DESIGN §11): at most `per_second` recorded per step attempt, the
latest wins a closed slot, and the last report is never lost."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stox_gateway.engine.errors import StaleAttempt
from stox_gateway.engine.models import Progress
from stox_gateway.engine.progress_gate import ProgressGate

PER_SECOND = 200.0  # a 5 ms slot keeps the property test fast


def report(n: int, step: str = "s1", attempt: int | None = 1) -> Progress:
    return Progress("w1", step, "image_processing", attempt=attempt, fraction=None, message=str(n))


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.recorded: list[tuple[str, float, float]] = []  # (message, started, finished)

    async def __call__(self, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self.delay)
        self.recorded.append((progress.message or "", started, loop.time()))


async def settle(gate: ProgressGate, deadline: float = 2.0) -> None:
    async with asyncio.timeout(deadline):
        while gate.holding or gate._tasks:
            await asyncio.sleep(0.001)


@settings(max_examples=30, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.004, 0.012]), min_size=1, max_size=40),
    delay=st.sampled_from([0.0, 0.002]),
)
def test_latest_wins_the_slot_and_the_last_is_never_lost(gaps: list[float], delay: float) -> None:
    async def run() -> Recorder:
        record = Recorder(delay)
        gate = ProgressGate(record, per_second=PER_SECOND)
        for n, gap in enumerate(gaps):
            await gate.offer(report(n))
            await asyncio.sleep(gap)
        await settle(gate)
        return record

    record = asyncio.run(run())
    messages = [int(m) for m, _, _ in record.recorded]
    assert messages[0] == 0  # an open slot records at once
    assert messages[-1] == len(gaps) - 1  # the last report is never lost
    assert messages == sorted(set(messages))  # in order, none twice
    interval = 1 / PER_SECOND
    for (_, _, finished), (_, started, _) in zip(
        record.recorded, record.recorded[1:], strict=False
    ):
        assert started >= finished + interval * 0.95  # timer granularity


async def test_a_burst_records_the_first_and_the_last_only() -> None:
    record = Recorder()
    gate = ProgressGate(record, per_second=20)
    answers = [await gate.offer(report(n)) for n in range(100)]
    assert answers[0] is True and not any(answers[1:])
    await settle(gate)
    assert [m for m, _, _ in record.recorded] == ["0", "99"]
    assert gate.superseded == 98


async def test_steps_and_attempts_have_slots_of_their_own() -> None:
    record = Recorder()
    gate = ProgressGate(record, per_second=1)
    assert await gate.offer(report(1, "s1"))
    assert await gate.offer(report(2, "s2"))
    assert await gate.offer(report(3, "s1", attempt=2))
    assert not await gate.offer(report(4, "s1"))


async def test_a_refusal_reaches_the_caller_of_an_open_slot_and_a_held_one_is_dropped() -> None:
    calls: list[str] = []

    async def refuse(progress: Progress) -> None:
        calls.append(progress.message or "")
        raise StaleAttempt("no longer current")

    gate = ProgressGate(refuse, per_second=PER_SECOND)
    with pytest.raises(StaleAttempt):
        await gate.offer(report(1))
    assert not await gate.offer(report(2))  # held; its refusal is only logged
    await settle(gate)
    assert calls == ["1", "2"]


async def test_the_held_report_is_handed_over_to_the_steps_outcome() -> None:
    record = Recorder()
    gate = ProgressGate(record, per_second=1)
    await gate.offer(report(1))
    await gate.offer(report(2))
    assert gate.take_held("w1", "s1", 2) == []  # another attempt's
    assert [p.message for p in gate.take_held("w1", "s1", 1)] == ["2"]
    assert gate.take_held("w1", "s1", 1) == [] and not gate.holding
    await gate.close()
    assert [m for m, _, _ in record.recorded] == ["1"]  # the slot no longer records it


async def test_close_records_what_is_held() -> None:
    record = Recorder()
    gate = ProgressGate(record, per_second=0.5)
    await gate.offer(report(1))
    await gate.offer(report(2))
    await gate.close()
    assert [m for m, _, _ in record.recorded] == ["1", "2"]


async def test_an_outcome_takes_only_its_steps_report_and_ended_steps_are_forgotten() -> None:
    gate = ProgressGate(Recorder(), per_second=PER_SECOND)
    for step in range(50):
        await gate.offer(report(1, f"s{step}"))
        await gate.offer(report(2, f"s{step}"))  # held for the slot
    taken = gate.take_held("w1", "s7", None)
    assert [(p.step_id, p.message) for p in taken] == [("s7", "2")]
    await settle(gate)
    await asyncio.sleep(3 / PER_SECOND)  # every slot opens with nothing held
    assert gate._slots == {} and gate._by_step == {}
