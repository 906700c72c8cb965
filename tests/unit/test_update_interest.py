"""Bucket keys of updates, the refcounted bindings of a replica's update queue, and the hub's
catch-up from the event log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from stox_gateway import routing
from stox_gateway.bus.port import BusUnavailable
from stox_gateway.bus.topics import topic_matches
from stox_gateway.engine.models import Update, UpdateType
from stox_gateway.hub import Hub, Subscriber
from stox_gateway.hub.interest import Interest, keys_for

# -- bucket keys ---------------------------------------------------------------------------


def test_a_name_always_falls_in_the_same_bucket_within_range() -> None:
    key = routing.workflow_update_key("wf-1")
    assert key == routing.workflow_update_key("wf-1")
    prefix, bucket = key.rsplit(".", 1)
    assert prefix == "gateway.update.w"
    assert 0 <= int(bucket) < routing.WORKFLOW_BUCKETS
    assert routing.owner_update_key("ann").startswith("gateway.update.o.")
    spread = {routing.workflow_update_key(f"wf-{i}") for i in range(1000)}
    assert len(spread) > 800  # names spread over the buckets


def test_odd_names_make_plain_topic_words() -> None:
    for name in ("a.b.c", "#", "*", "ann@example.com", "ü" * 300):
        key = routing.owner_update_key(name)  # no dots, wildcards or length of the name
        assert key.count(".") == 3 and key.rsplit(".", 1)[1].isdigit()


def test_a_batch_names_each_bucket_once_and_no_bucket_of_a_missing_owner() -> None:
    keys = routing.update_bucket_keys(["ann", "ann", None], ["w1", "w1", "w2"])
    assert keys == sorted(
        {
            routing.owner_update_key("ann"),
            routing.workflow_update_key("w1"),
            routing.workflow_update_key("w2"),
        }
    )


def test_an_update_key_never_reaches_a_queue_bound_to_gateway_update_by_its_own() -> None:
    """The firehose binding gets a message by its main key, not once more per bucket."""
    assert not topic_matches(routing.GATEWAY_UPDATE, routing.workflow_update_key("w"))


def test_what_each_subscriber_needs() -> None:
    assert keys_for("w1", None) == (routing.workflow_update_key("w1"),)
    assert keys_for("w1", "ann") == (routing.workflow_update_key("w1"),)
    assert keys_for(None, "ann") == (routing.owner_update_key("ann"),)
    assert keys_for(None, None) == (routing.GATEWAY_UPDATE,)  # everything


# -- refcounted bindings --------------------------------------------------------------------


class Broker:
    """Records binds and unbinds; `fail` makes the next bind raise; `gate` holds binds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def bind(self, key: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise BusUnavailable("broker away")
        self.calls.append(("bind", key))

    async def unbind(self, key: str) -> None:
        self.calls.append(("unbind", key))


async def test_the_first_follower_binds_and_the_last_one_unbinds() -> None:
    broker = Broker()
    interest = Interest(broker.bind, broker.unbind)
    await interest.follow(["k"])
    await interest.follow(["k"])
    assert broker.calls == [("bind", "k")]
    assert interest.count("k") == 2
    await interest.unfollow(["k"])
    assert broker.calls == [("bind", "k")]
    await interest.unfollow(["k"])
    assert broker.calls == [("bind", "k"), ("unbind", "k")]
    assert interest.bound == frozenset()
    await interest.follow(["k"])  # bound again for a newcomer
    assert broker.calls[-1] == ("bind", "k")


async def test_a_second_follower_waits_until_the_binding_is_in_place() -> None:
    broker = Broker()
    broker.gate = asyncio.Event()
    interest = Interest(broker.bind, broker.unbind)
    first = asyncio.create_task(interest.follow(["k"]))
    second = asyncio.create_task(interest.follow(["k"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not first.done() and not second.done()  # neither may read its state yet
    broker.gate.set()
    await asyncio.gather(first, second)
    assert broker.calls == [("bind", "k")]
    assert interest.count("k") == 2


async def test_a_failed_bind_counts_nothing_and_undoes_the_keys_already_bound() -> None:
    broker = Broker()
    original = broker.bind

    async def second_fails(key: str) -> None:
        broker.fail = key == "b"
        await original(key)

    interest = Interest(second_fails, broker.unbind)
    with pytest.raises(BusUnavailable):
        await interest.follow(["a", "b"])
    assert interest.bound == frozenset()
    assert broker.calls == [("bind", "a"), ("unbind", "a")]


async def test_a_failed_unbind_is_forgotten() -> None:
    async def bind(_key: str) -> None:
        return None

    async def unbind(_key: str) -> None:
        raise BusUnavailable("broker away")

    interest = Interest(bind, unbind)
    await interest.follow(["k"])
    await interest.unfollow(["k"])
    assert interest.count("k") == 0


async def test_the_hub_binds_per_subscriber_and_lets_go_once() -> None:
    broker = Broker()

    async def no_updates(_w: str, _a: int, _u: int | None) -> list[Update]:
        return []

    hub = Hub(no_updates, heartbeat_interval=0, interest=Interest(broker.bind, broker.unbind))
    one, two = Subscriber("w1"), Subscriber("w1")
    everything = Subscriber(None)
    for subscriber in (one, two, everything):
        await hub.follow(subscriber)
    assert hub.subscriber_count == 3
    assert [c for c in broker.calls if c[0] == "bind"] == [
        ("bind", routing.workflow_update_key("w1")),
        ("bind", routing.GATEWAY_UPDATE),
    ]
    for subscriber in (one, two, everything):
        await hub.unfollow(subscriber)
    assert hub.subscriber_count == 0
    assert hub.interest.bound == frozenset()


# -- catch-up -------------------------------------------------------------------------------


def an_update(workflow_id: str, seq: int) -> Update:
    kind = UpdateType.WORKFLOW_COMPLETED if seq == 3 else UpdateType.STEP_COMPLETED
    return Update(kind, workflow_id, seq, datetime(2024, 5, 1, tzinfo=UTC))


async def test_catch_up_sends_what_the_hub_missed_once_and_in_order() -> None:
    log = {"w1": [an_update("w1", s) for s in (1, 2, 3)]}
    loads: list[tuple[str, int, int | None]] = []

    async def load(workflow_id: str, after: int, up_to: int | None) -> list[Update]:
        loads.append((workflow_id, after, up_to))
        return [u for u in log[workflow_id] if after < u.seq <= (up_to or 10**9)]

    hub = Hub(load, heartbeat_interval=0)
    subscriber = Subscriber("w1")
    await hub.follow(subscriber)
    await hub.publish({"type": "step_completed", "workflow_id": "w1", "seq": 1, "data": {}})
    assert await hub.catch_up("w1", None, 3) == 2  # 2 and 3 were lost on the way
    assert await hub.catch_up("w1", None, 3) == 0  # nothing more
    frames = [subscriber.queue.get_nowait() for _ in range(subscriber.queue.qsize())]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert loads == [("w1", 1, 3)]


async def test_the_hub_skips_the_updates_of_a_batch_nobody_here_follows() -> None:
    async def no_updates(_w: str, _a: int, _u: int | None) -> list[Update]:
        return []

    hub = Hub(no_updates, heartbeat_interval=0)
    mine, anns = Subscriber("w1"), Subscriber(None, owner="ann")
    await hub.follow(mine)
    await hub.follow(anns)
    batch = [
        {"type": "step_completed", "workflow_id": w, "seq": 1, "data": {}} for w in ("w1", "w2")
    ]
    await hub.publish(batch, owner="bob")  # w2 is bob's, followed by nobody here
    await hub.publish([{"type": "step_completed", "workflow_id": "w3", "seq": 1}], owner="ann")
    assert (hub.last_seq("w1"), hub.last_seq("w2"), hub.last_seq("w3")) == (1, None, 1)
    assert [f.workflow_id for f in [mine.queue.get_nowait(), anns.queue.get_nowait()]] == [
        "w1",
        "w3",
    ]
    assert hub.received == 3
