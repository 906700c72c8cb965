"""Waiting out an outage inside a handler, then handing the message back uncounted.

A handler whose work depends on something that is down (the database, the gateway, the
broker) should neither fail the delivery (that counts towards the delivery limit, which is
for poison messages) nor wait forever (it holds a prefetch slot, and shutdown waits for it).
So: try; on the outage error, retry with backoff for a bounded time; then raise `Transient`,
and the bus requeues the message without counting it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from stox_gateway.bus.port import Transient

T = TypeVar("T")


async def with_patience(
    call: Callable[[], Awaitable[T]],
    *,
    outage: type[Exception],
    patience: float,
    retry_after: float,
    on_first_wait: Callable[[Exception], None] | None = None,
) -> T:
    """`await call()`, retried while it raises `outage`, for up to `patience` seconds; then
    `Transient(retry_after=...)`. The common case, a first try that succeeds, costs nothing."""
    try:
        return await call()
    except outage as first:
        if on_first_wait is not None:
            on_first_wait(first)
    retrying = AsyncRetrying(
        stop=stop_after_delay(patience),
        wait=wait_exponential(multiplier=0.1, max=2),
        retry=retry_if_exception_type(outage),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await call()
    except outage as exc:
        raise Transient(str(exc), retry_after=retry_after) from exc
    raise AssertionError("unreachable: tenacity either returned or raised")  # for mypy
