"""`OutboxHandoff`: rows committed here go to the relay from memory, never twice, and the table
is still read first, then at least every interval, at once while it has a backlog, and after
any row was given back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stox_gateway.store.outbox_handoff import OutboxHandoff
from stox_gateway.store.port import OutboxRow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def rows(*ids: int) -> list[OutboxRow]:
    return [OutboxRow(i, "step.x", f"m{i}", None, b"{}", True, {}) for i in ids]


def ids(found: list[OutboxRow] | None) -> list[int] | None:
    return None if found is None else [r.id for r in found]


def after_a_table_claim(found: list[OutboxRow] | None = None, limit: int = 10) -> OutboxHandoff:
    handoff = OutboxHandoff(table_claim_interval=0.25)
    assert handoff.take(limit, T0) is None  # the first claim reads the table
    handoff.from_table(found or [], limit, T0)
    return handoff


def test_handed_over_rows_are_taken_in_order_and_only_once() -> None:
    handoff = after_a_table_claim()
    assert handoff.take(10, T0) == []  # nothing handed over: nothing read either
    handoff.offer(rows(1, 2, 3))
    assert ids(handoff.take(2, T0)) == [1, 2]
    assert ids(handoff.take(2, T0)) == [3]
    handoff.offer(rows(2))  # offered again (an old copy): already claimed
    assert handoff.take(10, T0) == []


def test_the_table_gets_its_turn_every_interval_of_the_claims_clock() -> None:
    handoff = after_a_table_claim()
    handoff.offer(rows(1))
    assert handoff.take(10, T0 + timedelta(seconds=0.25)) is None
    assert handoff.take(10, T0 - timedelta(seconds=1)) is None  # the clock went back
    assert ids(handoff.take(10, T0 + timedelta(seconds=0.1))) == [1]


def test_a_full_table_claim_is_followed_by_another() -> None:
    handoff = after_a_table_claim(rows(1, 2), limit=2)
    assert handoff.take(2, T0) is None
    handoff.from_table(rows(3), 2, T0)
    assert handoff.take(2, T0) == []


def test_a_table_claim_skips_what_was_claimed_from_memory_and_takes_the_rest() -> None:
    handoff = after_a_table_claim()
    handoff.offer(rows(1, 2, 3))
    assert ids(handoff.take(1, T0)) == [1]  # 2 and 3 still in memory
    later = T0 + timedelta(seconds=1)
    assert handoff.take(10, later) is None
    fresh = handoff.from_table(rows(1, 2, 3, 4), 10, later)  # 1 is on its way, unmarked
    assert ids(fresh) == [2, 3, 4]
    assert handoff.take(10, later) == []  # 2 and 3 left memory with that claim
    assert len(handoff) == 0


def test_rows_given_back_are_claimable_again_from_the_table() -> None:
    handoff = after_a_table_claim()
    handoff.offer(rows(1, 2))
    assert ids(handoff.take(10, T0)) == [1, 2]
    handoff.release([2])
    assert handoff.take(10, T0) is None  # the table's turn: that is where row 2 still is
    assert ids(handoff.from_table(rows(2), 10, T0)) == [2]
    handoff.release([7])  # never claimed: changes nothing
    assert handoff.take(10, T0) == []


def test_memory_holds_at_most_its_capacity_and_leaves_the_rest_to_the_table() -> None:
    handoff = OutboxHandoff(capacity=2)
    handoff.from_table([], 10, T0)
    handoff.offer(rows(1, 2, 3))
    assert ids(handoff.take(10, T0)) == [1, 2]


def test_claimed_ids_are_remembered_up_to_a_bound() -> None:
    handoff = OutboxHandoff(remembered=2)
    handoff.from_table([], 10, T0)
    handoff.offer(rows(1, 2, 3))
    assert ids(handoff.take(10, T0)) == [1, 2, 3]
    handoff.offer(rows(1, 3))  # 1 is forgotten (the oldest), 3 is not
    assert ids(handoff.take(10, T0)) == [1]
