"""Pick the bus adapter from configuration; the RabbitMQ client is imported only when used."""

from __future__ import annotations

from stox_gateway.bus.port import Bus
from stox_gateway.config.settings import Settings


def make_bus(settings: Settings) -> Bus:
    if settings.event_bus == "memory":
        from stox_gateway.bus.memory import MemoryBus

        return MemoryBus(delivery_limit=settings.rabbitmq.delivery_limit)
    try:
        from stox_gateway.bus.rabbitmq import RabbitMQBus
    except ImportError as exc:  # pragma: no cover - aio-pika is a core dependency
        raise RuntimeError("event_bus: rabbitmq needs aio-pika: pip install aio-pika") from exc
    return RabbitMQBus(settings.rabbitmq)
