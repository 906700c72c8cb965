"""One contract for every bus adapter: routing, competing consumers, redelivery, dead letters,
and transient failures that do not use up the delivery limit."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from stox_gateway.bus.port import Delivery, Message, QueueSpec, Reject, Transient, Unroutable


def message(key: str, body: bytes = b"{}", **kw: Any) -> Message:
    return Message(routing_key=key, body=body, message_id=str(uuid.uuid4()), **kw)


def queue(bus: Any, name: str, *keys: str, **kw: Any) -> QueueSpec:
    return QueueSpec(name=f"{bus.queue_prefix}.{name}", bindings=keys, **kw)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_topic_routing_follows_amqp_wildcards(any_bus: Any) -> None:
    got: dict[str, list[str]] = {"star": [], "hash": [], "exact": []}

    def collect(name: str) -> Any:
        async def handler(delivery: Delivery) -> None:
            got[name].append(delivery.message.routing_key)

        return handler

    await any_bus.consume(queue(any_bus, "star", "step.*"), collect("star"))
    await any_bus.consume(queue(any_bus, "hash", "workflow.#"), collect("hash"))
    await any_bus.consume(queue(any_bus, "exact", "step.completed"), collect("exact"))
    for key in (
        "step.image_processing",
        "step.completed",
        "workflow.start",
        "workflow.a.b",
        "other",
    ):
        await any_bus.publish(message(key))
    await wait_for(lambda: len(got["star"]) == 2 and len(got["hash"]) == 2 and got["exact"])
    assert sorted(got["star"]) == ["step.completed", "step.image_processing"]
    assert sorted(got["hash"]) == ["workflow.a.b", "workflow.start"]
    assert got["exact"] == ["step.completed"]


async def test_a_message_keeps_its_id_correlation_and_headers(any_bus: Any) -> None:
    received: list[Message] = []

    async def handler(delivery: Delivery) -> None:
        received.append(delivery.message)

    await any_bus.consume(queue(any_bus, "meta", "meta.key"), handler)
    sent = message("meta.key", b'{"a": 1}', correlation_id="corr-1", headers={"x-owner": "ann"})
    await any_bus.publish(sent)
    await wait_for(lambda: received)
    got = received[0]
    assert (got.body, got.message_id, got.correlation_id) == (sent.body, sent.message_id, "corr-1")
    assert got.headers.get("x-owner") == "ann"
    assert got.routing_key == "meta.key"


async def test_competing_consumers_share_a_queue_without_duplicates(any_bus: Any) -> None:
    seen: Counter[str] = Counter()
    by_consumer: Counter[str] = Counter()

    def handler_for(name: str) -> Any:
        async def handler(delivery: Delivery) -> None:
            seen[delivery.message.message_id] += 1
            by_consumer[name] += 1
            await asyncio.sleep(0.002)

        return handler

    spec = queue(any_bus, "work", "work.item", prefetch=1)
    await any_bus.consume(spec, handler_for("a"))
    await any_bus.consume(spec, handler_for("b"))
    for _ in range(40):
        await any_bus.publish(message("work.item"))
    await wait_for(lambda: sum(seen.values()) >= 40)
    await asyncio.sleep(0.1)
    assert len(seen) == 40 and set(seen.values()) == {1}
    assert by_consumer["a"] > 0 and by_consumer["b"] > 0


async def test_a_declared_queue_keeps_messages_until_a_consumer_comes(any_bus: Any) -> None:
    spec = queue(any_bus, "later", "later.key")
    await any_bus.declare(spec)
    await any_bus.publish(message("later.key", b"kept"))
    got: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        got.append(delivery.message.body)

    await any_bus.consume(spec, handler)
    await wait_for(lambda: got)
    assert got == [b"kept"]


async def test_a_failing_message_is_redelivered_then_dead_lettered(any_bus: Any) -> None:
    counts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        raise RuntimeError("poison")

    spec = queue(any_bus, "poison", "poison.key")
    await any_bus.consume(spec, handler)
    await any_bus.publish(message("poison.key", b"bad"))
    await wait_for(lambda: len(counts) >= 3)
    dead: list[Any] = []

    async def collect() -> bool:
        dead.extend(await any_bus.dead_letters(spec.name))
        return bool(dead)

    async with asyncio.timeout(10):
        while not await collect():
            await asyncio.sleep(0.05)
    assert counts == [1, 2, 3]  # the delivery limit of these tests is 3
    assert dead[0].message.body == b"bad"
    assert "poison" in dead[0].reason


async def test_reject_dead_letters_at_once_with_the_reason(any_bus: Any) -> None:
    calls = 0

    async def handler(_delivery: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise Reject("not a step message")

    spec = queue(any_bus, "reject", "reject.key")
    await any_bus.consume(spec, handler)
    await any_bus.publish(message("reject.key"))
    dead: list[Any] = []
    async with asyncio.timeout(10):
        while not dead:
            dead.extend(await any_bus.dead_letters(spec.name))
            await asyncio.sleep(0.05)
    assert calls == 1
    assert dead[0].reason == "not a step message"


async def take_dead_letters(bus: Any, queue_name: str, settle: float = 0.3) -> list[Any]:
    """The queue's dead letters, after a pause long enough for a wrong one to arrive."""
    await asyncio.sleep(settle)
    return list(await bus.dead_letters(queue_name))


async def test_a_transient_failure_is_requeued_without_using_up_the_delivery_limit(
    any_bus: Any,
) -> None:
    """An outage of what the handler needs says nothing about the message: it waits, uncounted."""
    calls: list[tuple[int, float]] = []

    async def handler(delivery: Delivery) -> None:
        calls.append((delivery.delivery_count, time.monotonic()))
        if len(calls) <= 5:  # more than the delivery limit (3) of these tests
            raise Transient("database unavailable", retry_after=0.2)

    spec = queue(any_bus, "transient", "transient.key")
    await any_bus.consume(spec, handler)
    await any_bus.publish(message("transient.key", b"valid"))
    await wait_for(lambda: len(calls) >= 6, timeout=20)
    assert [count for count, _ in calls] == [1] * 6
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(calls)]
    assert min(gaps) >= 0.15, gaps  # it waited `retry_after` before coming back
    await asyncio.sleep(0.3)
    assert len(calls) == 6  # acked once it succeeded
    assert await take_dead_letters(any_bus, spec.name) == []


async def test_transient_failures_between_real_ones_leave_the_count_alone(any_bus: Any) -> None:
    """A poison message is still dead-lettered after `delivery_limit` real failures."""
    outcomes: list[BaseException] = [
        Transient("down", retry_after=0.01),
        RuntimeError("poison"),
        Transient("down", retry_after=0.01),
        Transient("down", retry_after=0.01),
        RuntimeError("poison"),
        RuntimeError("poison"),
    ]
    counts: list[int] = []

    async def handler(delivery: Delivery) -> None:
        counts.append(delivery.delivery_count)
        raise outcomes[len(counts) - 1]

    spec = queue(any_bus, "mixed", "mixed.key")
    await any_bus.consume(spec, handler)
    await any_bus.publish(message("mixed.key", b"bad"))
    dead: list[Any] = []
    async with asyncio.timeout(20):
        while not dead:
            dead.extend(await any_bus.dead_letters(spec.name))
            await asyncio.sleep(0.05)
    assert counts == [1, 1, 2, 2, 2, 3]
    assert "poison" in dead[0].reason


async def test_an_unroutable_mandatory_message_is_refused(any_bus: Any) -> None:
    with pytest.raises(Unroutable):
        await any_bus.publish(message("nobody.listens", mandatory=True))
    await any_bus.publish(message("nobody.listens"))  # not mandatory: dropped by design
