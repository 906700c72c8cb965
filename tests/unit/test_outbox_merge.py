"""`merge_updates` and the relay around it, on rows made by hand and a store and bus of fakes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stox_gateway import codec
from stox_gateway.bus.memory import MemoryBus
from stox_gateway.bus.outbox_relay import MAX_MERGED_BODY, OutboxRelay, merge_updates
from stox_gateway.bus.port import BusUnavailable, Delivery, Message, QueueSpec
from stox_gateway.bus.update_batch import BATCH_HEADER, decode
from stox_gateway.routing import owner_update_key, workflow_update_key
from stox_gateway.store.port import OutboxRow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def update(workflow_id: str, seq: int, pad: int = 0) -> dict[str, Any]:
    return {
        "type": "step_started",
        "workflow_id": workflow_id,
        "seq": seq,
        "timestamp": T0,
        "data": {"pad": "x" * pad},
    }


def row(
    routing_key: str,
    body: bytes,
    *,
    owner: str | None = None,
    available_at: datetime = T0,
    mandatory: bool = False,
) -> OutboxRow:
    n = next(_ids)
    return OutboxRow(
        id=n,
        routing_key=routing_key,
        message_id=f"m{n}",
        correlation_id=f"c{n}",
        body=body,
        mandatory=mandatory,
        headers={"x-owner": owner, "traceparent": f"t{n}"} if owner else {"traceparent": f"t{n}"},
        available_at=available_at,
    )


def update_row(*updates: dict[str, Any], owner: str | None = None, **kw: Any) -> OutboxRow:
    """A row as `outgoing_messages` writes it: a JSON array of one transition's updates."""
    return row("gateway.update", codec.dumps(list(updates)), owner=owner, **kw)


def old_update_row(one: dict[str, Any], owner: str | None = None) -> OutboxRow:
    """A row written before updates were grouped per transition: a single JSON object."""
    return row("gateway.update", codec.dumps(one), owner=owner)


def step_row(step_type: str = "image_processing", attempt: int = 1, **kw: Any) -> OutboxRow:
    body = {"event_id": "e", "step_id": f"s-{step_type}", "attempt": attempt, "data": {}}
    return row(f"step.{step_type}", codec.dumps(body), mandatory=True, **kw)


def seqs(message: Message) -> list[tuple[str, int]]:
    return [(u["workflow_id"], u["seq"]) for _, updates in decode(message) for u in updates]


def owners(message: Message) -> dict[str, str | None]:
    """workflow → the owner its updates came with."""
    return {u["workflow_id"]: owner for owner, updates in decode(message) for u in updates}


def shape(groups: list[tuple[list[OutboxRow], Message]]) -> list[list[int]]:
    return [[r.id for r in rows] for rows, _ in groups]


# -- merge_updates --------------------------------------------------------------------------


def test_nothing_to_merge_in_an_empty_batch() -> None:
    assert merge_updates([]) == []


def test_the_updates_of_one_owner_leave_as_one_array_in_order() -> None:
    rows = [
        update_row(update("a", 1), update("a", 2), owner="ann"),
        update_row(update("b", 1), owner="ann"),
        update_row(update("a", 3), update("a", 4), owner="ann"),
    ]
    [(merged_rows, message)] = merge_updates(rows)
    assert merged_rows == rows
    assert message.routing_key == "gateway.update"
    assert "x-owner" not in message.headers  # the owners travel in the body
    assert message.headers[BATCH_HEADER] == "1"
    assert seqs(message) == [("a", 1), ("a", 2), ("b", 1), ("a", 3), ("a", 4)]
    assert owners(message) == {"a": "ann", "b": "ann"}
    assert decode(message)[0][1][0] == json.loads(codec.dumps(update("a", 1)))


def test_the_message_names_the_buckets_of_its_owners_and_workflows() -> None:
    rows = [update_row(update("a", 1), owner="ann"), update_row(update("b", 1))]
    [(_, message)] = merge_updates(rows)
    assert sorted(message.headers["BCC"]) == sorted(
        [owner_update_key("ann"), workflow_update_key("a"), workflow_update_key("b")]
    )


def test_a_lone_update_row_keeps_its_ids() -> None:
    only = update_row(update("a", 1), update("a", 2), owner="ann")
    [(rows, message)] = merge_updates([only])
    assert rows == [only]
    assert (message.message_id, message.correlation_id) == (
        only.message_id,
        only.correlation_id,
    )
    assert message.headers["traceparent"] == only.headers["traceparent"]
    assert seqs(message) == [("a", 1), ("a", 2)]
    assert owners(message) == {"a": "ann"}


def test_other_rows_between_updates_do_not_split_them() -> None:
    """As a transition writes them: its step message, then its update row."""
    start = row("workflow.start", b'{"event_id":"e1"}')
    step = step_row()
    done = row("workflow.completed", b'{"event_id":"e2"}')
    completed = row("step.completed", b'{"event_id":"e3"}')
    u1, u2, u3, u4 = (update_row(update("a", s)) for s in (1, 2, 3, 4))
    groups = merge_updates([u1, start, step, u2, u3, done, completed, u4])
    assert shape(groups) == [
        [u1.id, u2.id, u3.id, u4.id],  # at the place of the first
        [start.id],
        [step.id],
        [done.id],
        [completed.id],
    ]
    for original, (_, message) in zip((start, step, done, completed), groups[1:], strict=True):
        assert message == Message(
            routing_key=original.routing_key,
            body=original.body,
            message_id=original.message_id,
            correlation_id=original.correlation_id,
            headers=original.headers,
            mandatory=original.mandatory,
        )
    assert seqs(groups[0][1]) == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]


def test_every_owner_shares_one_message_and_keeps_its_updates() -> None:
    rows = [
        update_row(update("a", 1), owner="ann"),
        update_row(update("a", 2), owner="ann"),
        update_row(update("b", 1), owner="bob"),
        update_row(update("c", 1)),  # no owner
        update_row(update("c", 2)),
        update_row(update("a", 3), owner="ann"),
    ]
    [(merged_rows, message)] = merge_updates(rows)
    assert merged_rows == rows
    assert decode(message) == [
        ("ann", [json.loads(codec.dumps(update("a", s))) for s in (1, 2, 3)]),
        ("bob", [json.loads(codec.dumps(update("b", 1)))]),
        (None, [json.loads(codec.dumps(update("c", s))) for s in (1, 2)]),
    ]


def test_a_message_in_the_older_form_is_still_read() -> None:
    """What a replica of the previous version sends: updates of the owner in `x-owner`."""
    body = codec.dumps([update("a", 1), update("a", 2)])
    older = Message("gateway.update", body, "m", headers={"x-owner": "ann"})
    assert decode(older) == [("ann", json.loads(body))]
    single = Message("gateway.update", codec.dumps(update("b", 1)), "m")
    assert seqs(single) == [("b", 1)]


def test_a_run_is_split_before_its_merged_body_would_exceed_the_limit() -> None:
    pad = MAX_MERGED_BODY // 7
    rows = [update_row(update("a", s, pad=pad)) for s in range(1, 21)]
    groups = merge_updates(rows)
    assert len(groups) > 1
    assert all(len(message.body) <= MAX_MERGED_BODY for _, message in groups)
    assert all(len(rows_) > 1 for rows_, _ in groups[:-1])  # still merged, only split
    # Nothing lost, nothing reordered.
    assert [r.id for rows_, _ in groups for r in rows_] == [r.id for r in rows]
    assert [s for _, m in groups for s in seqs(m)] == [("a", s) for s in range(1, 21)]


def test_a_row_larger_than_the_limit_leaves_alone() -> None:
    small_before = update_row(update("a", 1))
    huge = update_row(update("a", 2, pad=MAX_MERGED_BODY))
    small_after = update_row(update("a", 3))
    groups = merge_updates([small_before, huge, small_after])
    assert shape(groups) == [[small_before.id], [huge.id], [small_after.id]]
    assert seqs(groups[1][1]) == [("a", 2)]


def test_an_old_style_row_of_a_single_update_is_merged_with_the_others() -> None:
    rows = [
        old_update_row(update("a", 1), owner="ann"),
        update_row(update("a", 2), update("a", 3), owner="ann"),
        old_update_row(update("b", 7), owner="ann"),
    ]
    [(merged_rows, message)] = merge_updates(rows)
    assert merged_rows == rows
    assert seqs(message) == [("a", 1), ("a", 2), ("a", 3), ("b", 7)]


def test_a_lone_old_style_row_is_read_the_same() -> None:
    only = old_update_row(update("a", 1))
    [(_, message)] = merge_updates([only])
    assert seqs(message) == [("a", 1)]


def test_merged_old_style_rows_stay_within_the_limit() -> None:
    first = old_update_row(update("a", 1))
    pad = MAX_MERGED_BODY // 2 - len(first.body)
    rows = [old_update_row(update("a", s, pad=pad)) for s in (1, 2)]
    assert sum(len(r.body) for r in rows) <= MAX_MERGED_BODY  # two rows that fit the budget
    groups = merge_updates(rows)
    assert [s for _, m in groups for s in seqs(m)] == [("a", 1), ("a", 2)]
    assert max(len(message.body) for _, message in groups) <= MAX_MERGED_BODY


# -- the relay ------------------------------------------------------------------------------


@dataclass
class FakeBatch:
    rows: Sequence[OutboxRow]
    store: FakeStore

    async def mark_sent(self, ids: Sequence[int]) -> None:
        self.store.events.append(("mark_sent", list(ids)))
        self.store.sent.update(ids)


@dataclass
class FakeStore:
    """The relay's side of the store port: a list of rows, and a log of what was done."""

    rows: list[OutboxRow]
    sent: set[int] = field(default_factory=set)
    events: list[tuple[str, Any]] = field(default_factory=list)
    over: set[int] = field(default_factory=set)  # rows whose attempt the sweeper ended

    @contextlib.asynccontextmanager
    async def claim_outbox(self, now: datetime, limit: int = 100) -> AsyncIterator[FakeBatch]:
        due = [
            r
            for r in self.rows
            if r.id not in self.sent and (r.available_at is None or r.available_at <= now)
        ]
        yield FakeBatch(due[:limit], self)

    async def extend_deadlines(self, rows: Sequence[OutboxRow], now: datetime) -> list[int]:
        self.events.append(("extend_deadlines", ([r.id for r in rows], now)))
        return [r.id for r in rows if r.id in self.over]


@dataclass
class FakeBus:
    """Records what is published; refuses the messages whose id is in `refuse`, and those
    carrying an update of a workflow in `refuse_workflows` (a merged message has an id of its
    own)."""

    refuse: set[str] = field(default_factory=set)
    refuse_workflows: set[str] = field(default_factory=set)
    published: list[Message] = field(default_factory=list)
    events: list[tuple[str, Any]] | None = None

    async def publish(self, message: Message) -> None:
        if self.events is not None:
            self.events.append(("publish", message.message_id))
        if message.message_id in self.refuse:
            raise BusUnavailable("refused")
        if message.routing_key == "gateway.update" and self.refuse_workflows & {
            w for w, _ in seqs(message)
        }:
            raise BusUnavailable("refused")
        self.published.append(message)


def relay_for(store: FakeStore, bus: Any, now: datetime = T0, **kw: Any) -> OutboxRelay:
    return OutboxRelay(store, bus, clock=lambda: now, max_retries=0, **kw)  # type: ignore[arg-type]


async def test_the_relay_marks_every_row_of_a_merged_message_sent() -> None:
    rows = [update_row(update("a", s), owner="ann") for s in (1, 2, 3)]
    store, bus = FakeStore(rows), FakeBus()
    assert await relay_for(store, bus).relay_once() == 3
    [message] = bus.published
    assert seqs(message) == [("a", 1), ("a", 2), ("a", 3)]
    assert store.sent == {r.id for r in rows}
    assert await relay_for(store, bus).relay_once() == 0  # nothing left to send
    assert len(bus.published) == 1


async def test_a_failed_publish_of_a_merged_message_marks_none_of_its_rows() -> None:
    rows = [update_row(update("a", s), owner="ann") for s in (1, 2, 3)]
    store = FakeStore(rows)
    bus = FakeBus(refuse_workflows={"a"})
    with pytest.raises(BusUnavailable):
        await relay_for(store, bus).relay_once()
    assert bus.published == []
    assert store.sent == set()
    bus.refuse_workflows.clear()  # the broker is back: the next run sends them all
    assert await relay_for(store, bus).relay_once() == 3
    assert store.sent == {r.id for r in rows}


async def test_only_the_rows_of_the_failed_message_stay_unsent() -> None:
    ann = [update_row(update("a", s), owner="ann") for s in (1, 2)]
    step = step_row()
    bob = [update_row(update("b", s), owner="bob") for s in (1, 2)]
    store = FakeStore([*ann, step, *bob])
    bus = FakeBus(refuse_workflows={"b"})
    with pytest.raises(BusUnavailable):
        await relay_for(store, bus).relay_once()
    # The updates of both owners are one message: refused together, the step still goes.
    assert [m.routing_key for m in bus.published] == ["step.image_processing"]
    assert store.sent == {step.id}


async def test_a_batch_reaches_the_queues_bound_to_one_of_its_buckets_once() -> None:
    bus = MemoryBus()
    await bus.start()
    received: dict[str, list[Message]] = {"all": [], "a": [], "bob": [], "other": []}

    def keep(name: str) -> Any:
        async def handler(delivery: Delivery) -> None:
            received[name].append(delivery.message)

        return handler

    prefix = "test_outbox_merge"
    await bus.consume(QueueSpec(f"{prefix}.all", ("gateway.update",)), keep("all"))
    await bus.consume(QueueSpec(f"{prefix}.a", ()), keep("a"))
    await bus.bind(f"{prefix}.a", workflow_update_key("a"))
    await bus.bind(f"{prefix}.a", owner_update_key("ann"))  # two matching keys: one copy
    await bus.consume(QueueSpec(f"{prefix}.bob", (owner_update_key("bob"),)), keep("bob"))
    await bus.consume(QueueSpec(f"{prefix}.other", ()), keep("other"))
    await bus.bind(f"{prefix}.other", workflow_update_key("zz-not-in-the-batch"))
    rows = [
        update_row(update("a", 1), update("a", 2), owner="ann"),
        update_row(update("b", 1), owner="bob"),
    ]
    store = FakeStore(rows)
    try:
        assert await relay_for(store, bus).relay_once() == 2
        async with asyncio.timeout(2):
            await bus.join()
    finally:
        await bus.close()
    assert bus.published == 1
    assert [len(received[name]) for name in ("all", "a", "bob", "other")] == [1, 1, 1, 0]
    message = received["a"][0]
    assert seqs(message) == [("a", 1), ("a", 2), ("b", 1)]
    assert owners(message) == {"a": "ann", "b": "bob"}
    assert "BCC" not in message.headers  # the broker's routing header does not travel on
    assert store.sent == {r.id for r in rows}


async def test_late_step_messages_get_their_deadlines_restarted_before_they_leave() -> None:
    now = T0 + timedelta(minutes=5)
    late_step = step_row("image_processing", available_at=T0)
    on_time_step = step_row("ai_enhancement", available_at=now - timedelta(seconds=0.5))
    late_update = update_row(update("a", 1), available_at=T0)
    late_report = row("step.completed", b'{"step_id":"s","attempt":1}', available_at=T0)
    late_event = row("workflow.start", b'{"event_id":"e"}', available_at=T0)
    store = FakeStore([late_step, on_time_step, late_update, late_report, late_event])
    bus = FakeBus(events=store.events)
    assert await relay_for(store, bus, now=now).relay_once() == 5
    extended = [e for e in store.events if e[0] == "extend_deadlines"]
    assert extended == [("extend_deadlines", ([late_step.id], now))]
    # Committed before anything is published, so a sweeper elsewhere sees the new deadline.
    assert store.events[0][0] == "extend_deadlines"
    assert {e[0] for e in store.events[1:]} == {"publish", "mark_sent"}


async def test_no_deadline_moves_when_every_message_leaves_on_time() -> None:
    store = FakeStore([step_row(available_at=T0), update_row(update("a", 1), available_at=T0)])
    bus = FakeBus(events=store.events)
    assert await relay_for(store, bus, now=T0 + timedelta(seconds=0.5)).relay_once() == 2
    assert [e for e in store.events if e[0] == "extend_deadlines"] == []


async def test_a_late_step_message_whose_attempt_is_over_is_not_sent() -> None:
    """Held up past its deadline (a database restart under the relay): the sweeper has
    started the next attempt, so this one, sent now with a fresh dispatch time, would run
    the step a second time."""
    now = T0 + timedelta(minutes=5)
    over = step_row("image_processing", attempt=1, available_at=T0)
    live = step_row("ai_enhancement", attempt=1, available_at=T0)
    store = FakeStore([over, live], over={over.id})
    bus = FakeBus(events=store.events)
    assert await relay_for(store, bus, now=now).relay_once() == 1
    assert [m.routing_key for m in bus.published] == ["step.ai_enhancement"]
    assert store.sent == {over.id, live.id}  # dropped for good, not claimed again
