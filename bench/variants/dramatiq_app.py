"""Three no-op Dramatiq actors in a pipeline; the last one tells the harness it ended.

The worker runs `dramatiq bench.variants.dramatiq_app --processes 2 --threads 8`, configured
from `BENCH_AMQP_URL`, `BENCH_QUEUE` (unique per trial) and `BENCH_NOTIFY`. The harness makes
its own broker per trial (`make_broker`) and sends pipelines of messages by actor name. Broker
and middleware are Dramatiq's defaults (a pipeline needs no result backend); retries are off
so that a failure shows instead of hiding in a backoff.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.notify import notify

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
ACTORS = ("image_processing", "ai_enhancement", "seo_generation")
QUEUE = os.environ.get("BENCH_QUEUE", "bench_dramatiq")


def make_broker(url: str) -> RabbitmqBroker:
    return RabbitmqBroker(url=url)


def queues(queue: str) -> list[str]:
    """The queue and its delay and dead-letter queues (for the clean-up)."""
    return [queue, f"{queue}.DQ", f"{queue}.XQ"]


def start_pipeline(broker: RabbitmqBroker, queue: str, token: str) -> None:
    messages = [
        dramatiq.Message(queue_name=queue, actor_name=name, args=(token,) if i == 0 else (),
                         kwargs={}, options={})
        for i, name in enumerate(ACTORS)
    ]
    dramatiq.pipeline(messages, broker=broker).run()


if os.environ.get("BENCH_DRAMATIQ_WORKER"):  # only in the worker: the harness has its own broker
    dramatiq.set_broker(make_broker(os.environ.get("BENCH_AMQP_URL", DEFAULT_URL)))

    @dramatiq.actor(actor_name=ACTORS[0], queue_name=QUEUE, max_retries=0)
    def image_processing(token: str) -> str:
        return token

    @dramatiq.actor(actor_name=ACTORS[1], queue_name=QUEUE, max_retries=0)
    def ai_enhancement(token: str) -> str:
        return token

    @dramatiq.actor(actor_name=ACTORS[2], queue_name=QUEUE, max_retries=0)
    def seo_generation(token: str) -> None:  # None: no "result discarded" warning per call
        notify(token)
