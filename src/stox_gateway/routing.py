"""Every routing key and queue name on the bus, in one place (DESIGN §5).

Routing keys on the topic exchange:

    workflow.start | workflow.completed | workflow.failed    the workflow's life
    step.<type>                                              a step is due, for its service
    step.completed                                           a service's report over AMQP
    gateway.update                                           WebSocket updates between replicas

Queues (all under `rabbitmq.queue_prefix`):

    <prefix>.step.<type>                 durable, competing workers of one step type
    <prefix>.gateway.completed           durable, the reports every replica consumes
    <prefix>.gateway.updates.<replica>   exclusive, one replica's copy of every update
    <queue>.dead                         what <queue> could not process, via <exchange>.dlx
"""

from __future__ import annotations

WORKFLOW_START = "workflow.start"
WORKFLOW_COMPLETED = "workflow.completed"
WORKFLOW_FAILED = "workflow.failed"
STEP_COMPLETED = "step.completed"
GATEWAY_UPDATE = "gateway.update"
# On a step message that left the outbox late: when it left (its attempt's deadline runs from
# then, not from the `deadline_at` in its body).
DISPATCHED_AT_HEADER = "x-stox-dispatched-at"

_STEP = "step."
# Keys under `step.` that are reports to the gateway, not work for a service.
REPORT_KEYS = frozenset({STEP_COMPLETED})


def step_routing_key(step_type: str) -> str:
    """The key a step of `step_type` is sent with: `step.<type>`."""
    return f"{_STEP}{step_type}"


def is_step_message(routing_key: str) -> bool:
    """Whether a message is work for a step's service (not a report to the gateway)."""
    return routing_key.startswith(_STEP) and routing_key not in REPORT_KEYS


def step_queue(prefix: str, step_type: str) -> str:
    """The durable work queue of one step type: `<prefix>.step.<type>`."""
    return f"{prefix}.{_STEP}{step_type}"


def completion_queue(prefix: str) -> str:
    """The durable queue of `step.completed` reports, shared by the replicas."""
    return f"{prefix}.gateway.completed"


def update_queue(prefix: str, replica_id: str) -> str:
    """One replica's own queue of `gateway.update` messages."""
    return f"{prefix}.gateway.updates.{replica_id}"


def dead_letter_exchange(exchange: str) -> str:
    """The direct exchange dead letters go through, routed by the name of their queue."""
    return f"{exchange}.dlx"


def dead_letter_queue(queue: str) -> str:
    """Where what `queue` could not process is kept, with the reason."""
    return f"{queue}.dead"
