"""The floor: the Stox message pattern on bare aio-pika (see rawpika_proc)."""

from __future__ import annotations

import itertools

import aio_pika

from bench import cleanup
from bench.procs import PYTHON, spawn
from bench.variants import rawpika_proc
from bench.variants.base import Context, Variant, slug


class RawPikaVariant(Variant):
    key, label = "raw-aio-pika", "Raw aio-pika floor"

    def __init__(self, ctx: Context, trial: str) -> None:
        super().__init__(ctx, trial)
        self.base = slug(trial)
        self._counter = itertools.count()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def start(self) -> None:
        self.ctx.notices.on_notice = self.waiters.done
        self._connection = await aio_pika.connect_robust(self.ctx.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await rawpika_proc.declare(channel, self.base)
        env = {
            "BENCH_AMQP_URL": self.ctx.amqp_url,
            "BENCH_QUEUE": self.base,
            "BENCH_NOTIFY": self.ctx.notices.address,
        }
        module = "bench.variants.rawpika_proc"
        self.children["orchestrator"] = spawn(
            "orchestrator", [PYTHON, "-m", module, "orchestrator"], env=env, log_dir=self.log_dir
        )
        for k in (1, 2, 3):
            self.children[f"worker {k}"] = spawn(
                f"worker-{k}", [PYTHON, "-m", module, "worker", str(k)], env=env,
                log_dir=self.log_dir,
            )

    async def run_one(self) -> float:
        assert self._exchange is not None
        token = f"{self.base}:{next(self._counter)}"
        done = self.waiters.expect(token)
        await self._exchange.publish(rawpika_proc.message(token.encode()), routing_key="step1")
        return await done

    async def stop(self) -> None:
        self.ctx.notices.on_notice = lambda _t, _at: None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        await super().stop()

    async def cleanup(self) -> None:
        n = rawpika_proc.names(self.base)
        queues = [n[k] for k in ("step1", "step2", "step3", "completed")]
        await cleanup.delete_amqp(self.ctx.amqp_url, queues, [n["exchange"]])
