"""Three no-op Celery tasks; the last one tells the harness (bench.notify) that the chain ended.

The worker runs `celery -A bench.variants.celery_app worker`, configured from the environment:
`BENCH_AMQP_URL`, `BENCH_QUEUE` (unique per trial; also names the exchanges Celery declares),
`BENCH_NOTIFY`. The harness builds its own app per trial with `make_app` and sends chains by
task name. Everything else is Celery's default: no result backend (none is needed), prefork
pool, persistent messages, early ack, prefetch multiplier 4.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.notify import notify

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"
TASKS = ("bench.image_processing", "bench.ai_enhancement", "bench.seo_generation")


def make_app(broker_url: str, queue: str) -> Celery:
    celery = Celery("bench_celery", broker=broker_url)
    celery.conf.update(
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        control_exchange=f"{queue}.ctl",  # pidbox exchanges of this trial only
        event_exchange=f"{queue}.ev",
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    return celery


def exchanges(queue: str) -> list[str]:
    """What Celery declares besides the queue (for the clean-up)."""
    return [queue, f"{queue}.ctl.pidbox", f"reply.{queue}.ctl.pidbox", f"{queue}.ev"]


def start_chain(celery: Celery, token: str) -> None:
    first, second, third = (celery.signature(name) for name in TASKS)
    (first.clone(args=(token,)) | second | third).apply_async()


app = make_app(
    os.environ.get("BENCH_AMQP_URL", DEFAULT_URL), os.environ.get("BENCH_QUEUE", "bench")
)


@app.task(name=TASKS[0])
def image_processing(token: str) -> str:
    return token


@app.task(name=TASKS[1])
def ai_enhancement(token: str) -> str:
    return token


@app.task(name=TASKS[2])
def seo_generation(token: str) -> str:
    notify(token)
    return token
