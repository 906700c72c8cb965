"""Which updates this replica takes from the bus: the buckets its clients follow, counted.

A client following one workflow needs that workflow's bucket; one following every workflow of
its owner, the owner's bucket; one following everything (an operator, or any client with auth
off), `gateway.update` itself. The first client of a bucket binds this replica's update queue to
it, the last one to leave unbinds it; the binding is in place before the client's first frames
are read, so nothing committed after that read can pass the replica by.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import structlog

from stox_gateway.routing import GATEWAY_UPDATE, owner_update_key, workflow_update_key

log = structlog.get_logger(__name__)

Bind = Callable[[str], Awaitable[None]]


def keys_for(workflow_id: str | None, owner: str | None) -> tuple[str, ...]:
    """The routing keys a subscriber needs (see `Subscriber`: None means every)."""
    if workflow_id is not None:
        return (workflow_update_key(workflow_id),)
    if owner is not None:
        return (owner_update_key(owner),)
    return (GATEWAY_UPDATE,)


async def _nothing(_key: str) -> None:
    return None


class Interest:
    """Refcounted bindings: `bind` on a key's first follower, `unbind` after its last."""

    def __init__(self, bind: Bind = _nothing, unbind: Bind = _nothing) -> None:
        self._bind, self._unbind = bind, unbind
        self._counts: dict[str, int] = {}
        # One lock per key: a second follower waits until the first one's binding is in
        # place, and an unbind never overtakes a bind of the same key.
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def bound(self) -> frozenset[str]:
        """The keys bound now."""
        return frozenset(k for k, n in self._counts.items() if n > 0)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)

    async def follow(self, keys: Iterable[str]) -> None:
        """Count one more follower of each key; return once each is bound. On failure (the
        broker away) nothing is counted and the error is raised."""
        done: list[str] = []
        try:
            for key in keys:
                async with self._lock(key):
                    if self._counts.get(key, 0) == 0:
                        await self._bind(key)
                    self._counts[key] = self._counts.get(key, 0) + 1
                done.append(key)
        except BaseException:
            await self.unfollow(done)
            raise

    async def unfollow(self, keys: Iterable[str]) -> None:
        """Count one follower less; unbind the keys nobody follows any more. An unbind that
        fails is logged: the extra binding costs traffic, not correctness."""
        for key in keys:
            async with self._lock(key):
                left = self._counts.get(key, 0) - 1
                if left > 0:
                    self._counts[key] = left
                    continue
                self._counts.pop(key, None)
                try:
                    await self._unbind(key)
                except Exception as exc:
                    log.warning("hub.unbind_failed", key=key, error=f"{type(exc).__name__}: {exc}")

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock
