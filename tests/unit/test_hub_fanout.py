"""The hub's fan-out: lists of updates, per-workflow audiences, repeats, gaps, slow clients."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from stox_gateway import codec
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import Update, UpdateType
from stox_gateway.hub import Hub, Subscriber
from tests.support import capture_logs

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def update(workflow_id: str, seq: int) -> dict[str, Any]:
    return {
        "type": "step_started",
        "workflow_id": workflow_id,
        "seq": seq,
        "timestamp": NOW,
        "data": {"n": seq},
    }


class Log:
    """The event log behind the hub: answers gap fills and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, int]] = []

    async def __call__(self, workflow_id: str, after: int, up_to: int) -> list[Update]:
        self.asked.append((workflow_id, after, up_to))
        await asyncio.sleep(0)  # a read takes time: other publishes run meanwhile
        return [
            Update(UpdateType.STEP_STARTED, workflow_id, s, NOW, {"n": s})
            for s in range(after + 1, up_to + 1)
        ]


def new_hub(**kwargs: Any) -> tuple[Hub, Log]:
    log = Log()
    return Hub(log, heartbeat_interval=0, **kwargs), log


def received(subscriber: Subscriber) -> list[tuple[str | None, int] | None]:
    """What is queued for a subscriber: (workflow, seq) per frame; None ends the stream."""
    out: list[tuple[str | None, int] | None] = []
    while not subscriber.queue.empty():
        frame = subscriber.queue.get_nowait()
        if frame is None:
            out.append(None)
            continue
        message = codec.loads(frame.data)
        assert (message["workflow_id"], message["seq"]) == (frame.workflow_id, frame.seq)
        out.append((frame.workflow_id, frame.seq))
    return out


async def test_a_list_reaches_the_workflows_subscribers_and_the_firehose_in_order() -> None:
    hub, log = new_hub()
    follows_a, follows_b, follows_c = Subscriber("a"), Subscriber("b"), Subscriber("c")
    firehose = Subscriber(None)
    for subscriber in (follows_a, follows_b, follows_c, firehose):
        hub.subscribe(subscriber)
    # One merged message: the updates of several workflows, each in its own seq order.
    await hub.publish([update("a", 1), update("a", 2), update("b", 1), update("a", 3)])
    assert received(follows_a) == [("a", 1), ("a", 2), ("a", 3)]
    assert received(follows_b) == [("b", 1)]
    assert received(follows_c) == []
    assert received(firehose) == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert log.asked == []


async def test_a_single_update_dict_is_still_accepted() -> None:
    hub, _ = new_hub()
    subscriber = Subscriber("a")
    hub.subscribe(subscriber)
    await hub.publish(update("a", 1))
    await hub.publish([update("a", 2)])
    assert received(subscriber) == [("a", 1), ("a", 2)]


async def test_updates_already_pushed_are_dropped() -> None:
    hub, log = new_hub()
    subscriber, firehose = Subscriber("a"), Subscriber(None)
    hub.subscribe(subscriber)
    hub.subscribe(firehose)
    await hub.publish([update("a", 1), update("a", 2)])
    await hub.publish([update("a", 1), update("a", 2), update("a", 3)])  # relayed again, and more
    await hub.publish([update("a", 4), update("a", 4), update("a", 5)])  # a repeat inside a list
    await hub.publish(update("a", 2))
    expected = [("a", s) for s in range(1, 6)]
    assert received(subscriber) == expected
    assert received(firehose) == expected
    assert log.asked == []


async def test_a_gap_inside_a_list_is_filled_from_the_log_first() -> None:
    hub, log = new_hub()
    subscriber = Subscriber("a")
    hub.subscribe(subscriber)
    await hub.publish([update("a", 1)])
    await hub.publish([update("b", 1), update("a", 4), update("a", 5)])  # 2, 3 went elsewhere
    assert log.asked == [("a", 1, 3)]
    assert received(subscriber) == [("a", s) for s in range(1, 6)]


async def test_an_owners_subscriber_sees_only_that_owners_updates() -> None:
    hub, _ = new_hub()
    anns = Subscriber(None, owner="ann")
    everyone = Subscriber(None)
    hub.subscribe(anns)
    hub.subscribe(everyone)
    await hub.publish([update("a", 1), update("a", 2)], owner="ann")
    await hub.publish([update("b", 1)], owner="bob")
    assert received(anns) == [("a", 1), ("a", 2)]
    assert received(everyone) == [("a", 1), ("a", 2), ("b", 1)]


async def test_the_subscriber_count_follows_subscribe_and_unsubscribe() -> None:
    hub, _ = new_hub()
    a1, a2, b, firehose = Subscriber("a"), Subscriber("a"), Subscriber("b"), Subscriber(None)
    assert hub.subscriber_count == 0
    for subscriber in (a1, a2, b, firehose):
        hub.subscribe(subscriber)
    assert hub.subscriber_count == 4
    hub.subscribe(a1)  # again: still one subscription
    assert hub.subscriber_count == 4
    hub.unsubscribe(a1)
    hub.unsubscribe(a1)  # again: nothing more to remove
    assert hub.subscriber_count == 3
    hub.unsubscribe(Subscriber("never subscribed"))
    hub.unsubscribe(Subscriber(None))
    assert hub.subscriber_count == 3
    await hub.publish([update("a", 1)])
    assert received(a1) == []
    assert received(a2) == [("a", 1)]
    for subscriber in (a2, b, firehose):
        hub.unsubscribe(subscriber)
    assert hub.subscriber_count == 0
    hub.subscribe(a1)  # the last one of "a" left: following "a" again works
    await hub.publish([update("a", 2)])
    assert received(a1) == [("a", 2)]
    assert hub.subscriber_count == 1


async def test_a_slow_subscriber_is_dropped_without_affecting_the_others() -> None:
    drops: list[None] = []
    hub, _ = new_hub(on_drop=lambda: drops.append(None))
    slow = Subscriber("a", queue_size=2)
    fast, other, firehose = Subscriber("a"), Subscriber("b"), Subscriber(None)
    for subscriber in (slow, fast, other, firehose):
        hub.subscribe(subscriber)
    await hub.publish([update("a", s) for s in range(1, 6)] + [update("b", 1)])
    assert slow.dropped
    assert received(slow)[-1] is None  # its stream ends; the connection closes
    assert hub.dropped_slow == 1 and len(drops) == 1
    assert hub.subscriber_count == 3
    assert received(fast) == [("a", s) for s in range(1, 6)]
    assert received(other) == [("b", 1)]
    assert received(firehose) == [*(("a", s) for s in range(1, 6)), ("b", 1)]
    await hub.publish([update("a", 6)])  # the dropped one is not offered anything more
    assert received(slow) == []
    assert received(fast) == [("a", 6)]
    assert hub.dropped_slow == 1


def committed(workflow_id: str, *seqs: int) -> list[Update]:
    return [Update(UpdateType.STEP_STARTED, workflow_id, s, NOW, {"n": s}) for s in seqs]


async def test_updates_committed_here_go_out_at_once_and_their_bus_copies_are_dropped() -> None:
    hub, log = new_hub()
    follows_a, firehose = Subscriber("a"), Subscriber(None)
    hub.subscribe(follows_a)
    hub.subscribe(firehose)
    hub.publish_committed(committed("a", 1, 2), owner=None)  # no await: no round trip
    assert received(follows_a) == [("a", 1), ("a", 2)]
    await hub.publish([update("a", 1), update("a", 2)])  # the same, back from the bus
    await hub.publish([update("a", 3)])  # another replica's next one
    assert received(follows_a) == [("a", 3)]
    assert received(firehose) == [("a", 1), ("a", 2), ("a", 3)]
    assert log.asked == []


async def test_a_committed_update_after_a_gap_waits_for_the_event_log() -> None:
    hub, log = new_hub()
    follows_a = Subscriber("a")
    hub.subscribe(follows_a)
    await hub.publish([update("a", 1)])
    # Seq 2 was committed by another replica and is still on its way; 3 and 4 are ours.
    hub.publish_committed(committed("a", 3, 4), owner=None)
    assert received(follows_a) == [("a", 1)]  # nothing out of order in the meantime
    for _ in range(10):
        await asyncio.sleep(0)
    await hub.publish([update("a", 2)])  # the other replica's copy arrives late: a repeat
    assert received(follows_a) == [("a", 2), ("a", 3), ("a", 4)]
    assert log.asked[0] == ("a", 1, 2)


async def test_concurrent_gap_fills_push_each_update_once_in_order() -> None:
    hub, _ = new_hub()
    follows_a = Subscriber("a")
    hub.subscribe(follows_a)
    await hub.publish([update("a", 1)])
    await asyncio.gather(hub.publish([update("a", 4)]), hub.publish([update("a", 3)]))
    assert received(follows_a) == [("a", 1), ("a", 2), ("a", 3), ("a", 4)]


async def test_a_gap_fill_the_database_cannot_answer_waits_for_the_bus_copy() -> None:
    """A database restart under the gap fill: logged, nothing pushed out of order, and the
    updates' copies from the bus fill the gap later (no exception left in a task)."""

    async def away(workflow_id: str, after: int, up_to: int) -> list[Update]:
        raise Unavailable("database unavailable: ConnectionRefusedError")

    hub = Hub(away, heartbeat_interval=0)
    follows_a = Subscriber("a")
    hub.subscribe(follows_a)
    await hub.publish([update("a", 1)])
    with capture_logs() as logs:
        hub.publish_committed(committed("a", 3), owner=None)
        for _ in range(10):
            await asyncio.sleep(0)
    assert [e["event"] for e in logs] == ["hub.gap_fill_deferred"]
    assert received(follows_a) == [("a", 1)]
    await hub.publish([update("a", 2), update("a", 3)])
    assert received(follows_a) == [("a", 2), ("a", 3)]
