"""Fan-out of updates to WebSocket subscribers, in `seq` order, with no gap and no repeat.

Updates reach the hub from the bus (`gateway.update`, on a queue of this replica's own, bound
only to what its clients follow: see `interest`), so a client on replica A sees what replica B
committed; what this replica commits it also pushes at
once (`publish_committed`), so its own clients need not wait for the round trip through the
outbox and the broker. The hub keeps, per workflow, the last `seq` it pushed: a repeat (the
bus copy of an update pushed at once, an outbox row sent twice) is dropped, and a gap (updates
of two replicas crossing) is filled from the event log before the newer update goes out.

After the update queue was away (a reconnect: the broker dropped what came meanwhile) or
dropped messages (it is bounded), `catch_up` brings each followed workflow up to date from the
event log.

Each subscriber has a bounded queue; one that falls behind is disconnected (close code 1013)
instead of slowing the others, and can resume with `?since=`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from stox_gateway import codec
from stox_gateway.engine.errors import Unavailable
from stox_gateway.engine.models import JSON, Update
from stox_gateway.hub.interest import Interest, keys_for
from stox_gateway.wire import update_to_wire

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Frame:
    """An encoded message and what it is about, so the writer can skip what a client has.

    `data` is text, decoded once: a WebSocket sends it as a text frame (browsers `JSON.parse`
    it), to every client that wants it.
    """

    workflow_id: str | None
    seq: int
    data: str


LoadUpdates = Callable[[str, int, int | None], Awaitable[list[Update]]]
CLOSE_TOO_SLOW = 1013


@dataclass(eq=False, slots=True)
class Subscriber:
    """One WebSocket connection's view: which workflows, and what it has already seen."""

    workflow_id: str | None  # None: every workflow the caller may see
    owner: str | None = None  # when set, only that user's workflows
    queue_size: int = 256
    floors: dict[str, int] = field(default_factory=dict)  # workflow → last seq already sent
    queue: asyncio.Queue[Frame | None] = field(init=False)
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)

    def wants(self, workflow_id: str, owner: str | None, seq: int) -> bool:
        if self.workflow_id is not None and workflow_id != self.workflow_id:
            return False
        if self.owner is not None and owner != self.owner:
            return False
        return seq > self.floors.get(workflow_id, 0)

    def already_has(self, frame: Frame) -> bool:
        """Covered by the first frames (snapshot or replay) this subscriber was sent."""
        if frame.workflow_id is None:
            return False
        return frame.seq <= self.floors.get(frame.workflow_id, 0)

    def close(self) -> None:
        """End the stream: the connection's writer sees `None` and closes the socket."""
        with contextlib.suppress(asyncio.QueueEmpty):
            while self.queue.full():
                self.queue.get_nowait()
        self.queue.put_nowait(None)

    def offer(self, frame: Frame) -> bool:
        """Queue a frame; False when the subscriber is too slow and must be dropped."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped = True
            self.close()
            return False
        return True


class Hub:
    def __init__(
        self,
        load_updates: LoadUpdates,
        *,
        heartbeat_interval: float = 30.0,
        remembered_workflows: int = 100_000,
        on_drop: Callable[[], None] | None = None,
        interest: Interest | None = None,
    ) -> None:
        self._load_updates = load_updates
        self.interest = interest or Interest()
        self._heartbeat_interval = heartbeat_interval
        # Indexed by what they follow, so an update costs its own audience, not everyone's:
        # a thousand browsers each on one workflow are not visited for every other workflow.
        self._firehose: set[Subscriber] = set()  # every workflow (`/ws` without an id)
        self._firehose_owners: Counter[str | None] = Counter()  # their owner filters
        self._by_workflow: dict[str, set[Subscriber]] = {}
        self._count = 0
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered_workflows
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._filling: set[asyncio.Task[None]] = set()  # gap fills of `publish_committed`
        self.dropped_slow = 0
        self.received = 0  # updates that came from the bus
        self._on_drop = on_drop

    @property
    def subscriber_count(self) -> int:
        return self._count

    def _all_subscribers(self) -> list[Subscriber]:
        return [*self._firehose, *(s for group in self._by_workflow.values() for s in group)]

    async def start(self) -> None:
        if self._heartbeat_interval > 0:
            self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="hub-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat_task:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        for task in list(self._filling):
            task.cancel()
        await asyncio.gather(*self._filling, return_exceptions=True)
        self.close_all()

    def close_all(self) -> None:
        """End every subscriber's stream: their connections close with 1001 (going away)."""
        for subscriber in self._all_subscribers():
            subscriber.close()
        self._firehose.clear()
        self._firehose_owners.clear()
        self._by_workflow.clear()
        self._count = 0

    async def follow(self, subscriber: Subscriber) -> None:
        """Bind what `subscriber` needs from the bus, then subscribe it; call before reading
        its first frames. Raises `BusError` when the broker cannot bind."""
        await self.interest.follow(keys_for(subscriber.workflow_id, subscriber.owner))
        self.subscribe(subscriber)

    async def unfollow(self, subscriber: Subscriber) -> None:
        """The end of a `follow` (once per `follow`, whether or not the hub dropped it)."""
        self.unsubscribe(subscriber)
        await self.interest.unfollow(keys_for(subscriber.workflow_id, subscriber.owner))

    def followed_workflows(self) -> list[str]:
        """The workflows that subscribers follow one by one."""
        return list(self._by_workflow)

    def firehose_owners(self) -> set[str | None]:
        """The owner filters of the subscribers following every workflow (None: all owners)."""
        return set(self._firehose_owners)

    def last_seq(self, workflow_id: str) -> int | None:
        return self._last_seq.get(workflow_id)

    async def catch_up(self, workflow_id: str, owner: str | None, seq: int) -> int:
        """Push what this hub has not pushed of a workflow up to `seq`, from the event log;
        return how many updates went out."""
        last = self._last_seq.get(workflow_id)
        if last is not None and last >= seq:
            return 0
        missed = await self._load_updates(workflow_id, last or 0, seq)
        for update in missed:
            self._fan_out(update_to_wire(update), owner)
        return len(missed)

    def subscribe(self, subscriber: Subscriber) -> None:
        if subscriber.workflow_id is None:
            group = self._firehose
        else:
            group = self._by_workflow.setdefault(subscriber.workflow_id, set())
        if subscriber not in group:
            group.add(subscriber)
            self._count += 1
            if subscriber.workflow_id is None:
                self._firehose_owners[subscriber.owner] += 1

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber.workflow_id is None:
            group: set[Subscriber] | None = self._firehose
        else:
            group = self._by_workflow.get(subscriber.workflow_id)
        if group is None or subscriber not in group:
            return
        group.discard(subscriber)
        self._count -= 1
        if subscriber.workflow_id is None:
            self._firehose_owners[subscriber.owner] -= 1
            if self._firehose_owners[subscriber.owner] <= 0:
                del self._firehose_owners[subscriber.owner]
        if not group and subscriber.workflow_id is not None:
            del self._by_workflow[subscriber.workflow_id]

    async def publish(self, message: JSON | list[JSON], owner: str | None = None) -> None:
        """Deliver the updates of one `gateway.update` message (an array of updates, or one
        update), each filling any gap of its workflow from the event log first."""
        updates = message if isinstance(message, list) else [message]
        self.received += len(updates)
        everything = self._follows_owner(owner)
        for update in updates:
            # A batch holds the updates of other replicas' clients too: skipped at a glance.
            if everything or update["workflow_id"] in self._by_workflow:
                await self._publish_one(update, owner)

    def _follows_owner(self, owner: str | None) -> bool:
        """Whether a subscriber here follows every workflow of `owner`."""
        owners = self._firehose_owners
        return None in owners or (owner is not None and owner in owners)

    def publish_committed(self, updates: Sequence[Update], owner: str | None) -> None:
        """Updates this process has just committed, pushed at once. Their copies from the bus
        come later and are dropped as repeats; a gap (another replica's update still on its
        way) is filled from the event log first, in a task of its own."""
        for update in updates:
            message = update_to_wire(update)
            last = self._last_seq.get(update.workflow_id)
            if last is not None and update.seq > last + 1:
                task = asyncio.create_task(self._fill_then_publish(message, owner))
                self._filling.add(task)
                task.add_done_callback(self._filling.discard)
            else:
                self._fan_out(message, owner)

    async def _fill_then_publish(self, message: JSON, owner: str | None) -> None:
        try:
            await self._publish_one(message, owner)
        except Unavailable as exc:
            # The database went away under the gap fill: the bus copy of this update comes
            # later and fills the gap then, so nothing is pushed out of order.
            log.warning("hub.gap_fill_deferred", workflow_id=message["workflow_id"], error=str(exc))

    async def _publish_one(self, message: JSON, owner: str | None) -> None:
        workflow_id, seq = message["workflow_id"], int(message["seq"])
        last = self._last_seq.get(workflow_id)
        if last is not None and seq <= last:
            return  # already pushed: an outbox row relayed twice
        if last is not None and seq > last + 1:
            for missed in await self._load_updates(workflow_id, last, seq - 1):
                self._fan_out(update_to_wire(missed), owner)
        self._fan_out(message, owner)

    def _fan_out(self, message: JSON, owner: str | None) -> None:
        workflow_id, seq = message["workflow_id"], int(message["seq"])
        last = self._last_seq.get(workflow_id)
        if last is not None and seq <= last:
            return  # pushed meanwhile (while a gap was being filled)
        self._remember(workflow_id, seq)
        frame: Frame | None = None
        audience = [*self._firehose, *self._by_workflow.get(workflow_id, ())]
        for subscriber in audience:
            if not subscriber.wants(workflow_id, owner, seq):
                continue
            frame = frame or Frame(workflow_id, seq, codec.dumps_str(message))
            if not subscriber.offer(frame):
                self._drop(subscriber)

    def _remember(self, workflow_id: str, seq: int) -> None:
        self._last_seq[workflow_id] = seq
        self._last_seq.move_to_end(workflow_id)
        while len(self._last_seq) > self._remembered:
            self._last_seq.popitem(last=False)

    def _drop(self, subscriber: Subscriber) -> None:
        self.dropped_slow += 1
        if self._on_drop is not None:
            self._on_drop()
        self.unsubscribe(subscriber)
        log.warning("ws.slow_client_dropped", workflow_id=subscriber.workflow_id)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            frame = heartbeat_frame()
            for subscriber in self._all_subscribers():
                if not subscriber.offer(frame):
                    self._drop(subscriber)


def heartbeat_frame() -> Frame:
    message: dict[str, Any] = {
        "type": "heartbeat",
        "workflow_id": None,
        "seq": 0,
        "timestamp": datetime.now(UTC),
        "data": {},
    }
    return Frame(None, 0, codec.dumps_str(message))
