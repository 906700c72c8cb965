"""A rogue service: takes one step message, acks it, and exits without reporting.

    python -m chaos.rogue_consumer amqp://guest:guest@127.0.0.1:5672/ <prefix>.step.image_processing

Plain aio-pika, no SDK: the step is gone from the queue and no report will ever come, so only
the step's deadline can notice (the gateway then retries the step). Prints one JSON line with
what it swallowed; exits 0 after swallowing one message, 3 when none came within the timeout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aio_pika


async def swallow_one(url: str, queue_name: str, timeout: float = 30.0) -> dict[str, object] | None:
    connection = await aio_pika.connect(
        url, timeout=10, client_properties={"connection_name": "chaos-rogue"}
    )
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        queue = await channel.get_queue(queue_name, ensure=True)  # passive: the gateway's queue
        taken: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(taken.put)
        try:
            message = await asyncio.wait_for(taken.get(), timeout)
        except TimeoutError:
            return None
        # Stop the flow first (prefetch 1: nothing else is in hand), then ack the one we keep.
        await queue.cancel(tag)
        await message.ack()
        acked_at = time.time()
        await channel.close()  # a round trip: the ack has reached the broker
        try:
            body = json.loads(message.body)
        except ValueError:
            body = {}
        return {
            "swallowed": True,
            "queue": queue_name,
            "workflow_id": body.get("workflow_id"),
            "step_id": body.get("step_id"),
            "step_type": body.get("step_type"),
            "attempt": body.get("attempt"),
            "acked_at": acked_at,
        }
    finally:
        await connection.close()


def main() -> int:
    if len(sys.argv) < 3:
        print("usage: python -m chaos.rogue_consumer <amqp-url> <queue> [timeout]", file=sys.stderr)
        return 2
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    result = asyncio.run(swallow_one(sys.argv[1], sys.argv[2], timeout))
    print(json.dumps(result if result else {"swallowed": False}), flush=True)
    return 0 if result else 3


if __name__ == "__main__":
    sys.exit(main())
