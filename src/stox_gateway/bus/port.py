"""The bus port. Adapters implement it; nothing above them knows which broker is in use.

Ack policy, the same for every adapter: a handler that returns acks the message; one that
raises `Reject` dead-letters it at once with the reason; one that raises `Transient` requeues it
after `retry_after` seconds without counting the delivery; any other exception requeues it, and
a message delivered `delivery_limit` times is dead-lettered with the last error as its reason.

The delivery limit is for poison messages: a message that fails because something it needs is
down (the database restarting) says nothing about the message, so it must not use the budget up.
Whatever happens to the connection, a delivery ends acked, requeued or dead-lettered: never kept
in hand unsettled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from stox_gateway.errors import Misconfigured, Unavailable


@dataclass(frozen=True, slots=True)
class Message:
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    mandatory: bool = False  # raise `Unroutable` when no queue is bound to the key


@dataclass(frozen=True, slots=True)
class Delivery:
    message: Message
    delivery_count: int = 1  # 1 on the first delivery

    @property
    def redelivered(self) -> bool:
        return self.delivery_count > 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message its queue could not process, and why."""

    message: Message
    reason: str


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue, what it is bound to, and how it is consumed.

    `durable` queues are shared work queues (competing consumers) that outlive the gateway;
    `exclusive` ones belong to one process and vanish with it (a replica's update queue).
    """

    name: str
    bindings: tuple[str, ...]
    durable: bool = True
    exclusive: bool = False
    prefetch: int = 32
    concurrency: int = 1  # handler calls in flight; 1 keeps the queue's order
    dead_letter: bool = True
    # Bounds of an exclusive queue: past them the broker drops the oldest message (RabbitMQ's
    # `x-max-length` / `x-max-length-bytes` with `drop-head`); None: unbounded.
    max_length: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many consumers a queue has and how many messages wait in it (not yet delivered)."""

    consumers: int
    ready: int


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise `BusUnavailable` when the broker does not answer."""

    async def declare(self, queue: QueueSpec) -> None:
        """Declare a queue and its bindings without consuming (so messages wait for a consumer)."""

    async def publish(self, message: Message) -> None:
        """Publish and wait for the broker's confirm; raise `BusError` on failure."""

    async def consume(self, queue: QueueSpec, handler: Handler) -> Subscription: ...

    async def counts(self, queue_name: str) -> QueueCounts:
        """The queue's consumers and ready messages (0 and 0 for a queue that does not exist);
        raise `BusUnavailable` when the broker does not answer."""

    async def bind(self, queue: str, routing_key: str) -> None:
        """Bind a queue this bus consumes to one more key; it is restored with the queue after
        a reconnect. Returns once the broker routes that key to the queue."""

    async def unbind(self, queue: str, routing_key: str) -> None:
        """Remove a binding added by `bind`."""

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time the connection is back with every queue, binding and
        consumer restored (what was published meanwhile to an exclusive queue is lost)."""


class BusError(Unavailable):
    """Publishing or consuming failed (an outage to callers: 503, gRPC UNAVAILABLE)."""

    code = "bus_unavailable"


class BusUnavailable(BusError):
    pass


class Unroutable(BusError):
    """A mandatory message matched no queue."""


class QueueMismatch(Misconfigured):
    """A queue this process would declare exists with other arguments (another deployment's
    dead-letter exchange, another queue type): RabbitMQ answers PRECONDITION_FAILED."""

    code = "queue_mismatch"


class Reject(Exception):
    """Raised by a handler: the message can never be processed; dead-letter it with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transient(Exception):
    """Raised by a handler: the message is fine but cannot be processed now (a dependency is
    down). Requeue it after `retry_after` seconds; the delivery does not count towards
    `delivery_limit`, so an outage, however long, never dead-letters a valid message."""

    def __init__(self, reason: str, *, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
