"""The event bus: a topic exchange with AMQP routing-key semantics (DESIGN §5).

`port.py` is the interface, `memory.py` the in-process adapter (the embedded default), and
`rabbitmq.py` the real one; `factory.py` picks one from configuration. The outbox relay lives
above the adapters, once.
"""

from stox_gateway.bus.port import Bus, Delivery, Message, QueueSpec, Reject

__all__ = ["Bus", "Delivery", "Message", "QueueSpec", "Reject"]
