"""The raw aio-pika floor's processes: `orchestrator` and `worker <1|2|3>`.

The harness publishes step 1; worker k consumes `<name>.step.k` and publishes
`completed` (step k); the orchestrator consumes `completed`, publishes step k+1, and after
step 3 sends a notice to the harness: six messages per workflow, like Stox. Durable queues,
persistent messages, publisher confirms, acks only after the confirm.

    python -m bench.variants.rawpika_proc orchestrator|worker K   (env: BENCH_AMQP_URL,
                                                                   BENCH_QUEUE, BENCH_NOTIFY)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from bench.notify import notify

PREFETCH = 128


def names(base: str) -> dict[str, str]:
    return {
        "exchange": f"{base}.x",
        "completed": f"{base}.completed",
        **{f"step{k}": f"{base}.step.{k}" for k in (1, 2, 3)},
    }


async def declare(channel: aio_pika.abc.AbstractChannel, base: str) -> AbstractExchange:
    n = names(base)
    exchange = await channel.declare_exchange(n["exchange"], aio_pika.ExchangeType.TOPIC,
                                              durable=True)
    for key in ("step1", "step2", "step3", "completed"):
        queue = await channel.declare_queue(n[key], durable=True)
        await queue.bind(exchange, routing_key=key)
    return exchange


def message(body: bytes) -> aio_pika.Message:
    return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type="text/plain")


async def main(role: str, step: int) -> None:
    base = os.environ["BENCH_QUEUE"]
    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=PREFETCH)
    exchange = await declare(channel, base)
    tasks: set[asyncio.Task[None]] = set()

    async def on_step(incoming: AbstractIncomingMessage) -> None:  # worker k: report, then ack
        await exchange.publish(message(incoming.body + b" %d" % step), routing_key="completed")
        await incoming.ack()

    async def on_completed(incoming: AbstractIncomingMessage) -> None:  # the orchestrator
        token, _, done = incoming.body.decode().rpartition(" ")
        if done == "3":
            notify(token)
        else:
            await exchange.publish(message(token.encode()), routing_key=f"step{int(done) + 1}")
        await incoming.ack()

    handler = on_completed if role == "orchestrator" else on_step

    async def spawn(incoming: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(handler(incoming))  # confirms overlap, up to the prefetch
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    queue_name = names(base)["completed" if role == "orchestrator" else f"step{step}"]
    queue = await channel.get_queue(queue_name)
    await queue.consume(spawn)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await connection.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
