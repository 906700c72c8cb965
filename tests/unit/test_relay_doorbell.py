"""The relay's sleep between batches: a commit's ring wakes it at once, else the poll does."""

from __future__ import annotations

import asyncio
import time

from stox_gateway.bus.outbox_relay import _Doorbell


async def test_a_ring_before_the_wait_is_not_lost() -> None:
    bell = _Doorbell()
    bell.ring()
    started = time.monotonic()
    await bell.wait(5.0)
    assert time.monotonic() - started < 1.0


async def test_a_ring_during_the_wait_wakes_it() -> None:
    bell = _Doorbell()
    waiting = asyncio.ensure_future(bell.wait(5.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    bell.ring()
    await asyncio.wait_for(waiting, 1.0)


async def test_without_a_ring_the_wait_ends_after_its_timeout() -> None:
    bell = _Doorbell()
    started = time.monotonic()
    await bell.wait(0.05)
    assert time.monotonic() - started >= 0.04


async def test_clear_forgets_an_earlier_ring() -> None:
    bell = _Doorbell()
    bell.ring()
    bell.clear()
    waiting = asyncio.ensure_future(bell.wait(5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # cleared: this wait needs a new ring
    bell.ring()
    await asyncio.wait_for(waiting, 1.0)
