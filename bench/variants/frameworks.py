"""Celery 5 chain and Dramatiq pipeline over the same RabbitMQ, three no-op steps each.

The harness publishes from one thread of its own (both clients are synchronous); the last
task/actor sends a notice (bench.notify) and the harness stamps its arrival.
"""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import cleanup
from bench.procs import REPO, spawn
from bench.variants.base import Context, Variant, slug

VENV_BIN = REPO / ".venv" / "bin"


class _NoticeVariant(Variant):
    """Completion by notice: tokens are made here, resolved by the harness's notice server."""

    def __init__(self, ctx: Context, trial: str) -> None:
        super().__init__(ctx, trial)
        self.queue = slug(trial)
        self._counter = itertools.count()
        self._executor: ThreadPoolExecutor | None = None

    def _env(self) -> dict[str, str]:
        return {
            "BENCH_AMQP_URL": self.ctx.amqp_url,
            "BENCH_QUEUE": self.queue,
            "BENCH_NOTIFY": self.ctx.notices.address,
        }

    def _send(self, token: str) -> None:
        raise NotImplementedError

    async def run_one(self) -> float:
        assert self._executor is not None
        token = f"{self.queue}:{next(self._counter)}"
        done = self.waiters.expect(token)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._send, token)
        return await done

    async def _begin(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.key)
        self.ctx.notices.on_notice = self.waiters.done

    async def stop(self) -> None:
        self.ctx.notices.on_notice = lambda _t, _at: None
        await super().stop()
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
            self._executor = None


class CeleryVariant(_NoticeVariant):
    key, label = "celery", "Celery 5 chain"

    def __init__(self, ctx: Context, trial: str) -> None:
        super().__init__(ctx, trial)
        self._app: Any = None

    async def start(self) -> None:
        from bench.variants import celery_app

        await self._begin()
        self.children["celery worker"] = spawn(
            "celery",
            [str(VENV_BIN / "celery"), "-A", "bench.variants.celery_app", "worker",
             "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
             "--hostname", f"{self.queue}@%h"],
            env=self._env(),
            log_dir=self.log_dir,
        )
        self._app = celery_app.make_app(self.ctx.amqp_url, self.queue)

    def _send(self, token: str) -> None:
        from bench.variants import celery_app

        celery_app.start_chain(self._app, token)

    async def stop(self) -> None:
        await super().stop()
        if self._app is not None:
            await asyncio.to_thread(self._app.close)

    async def cleanup(self) -> None:
        from bench.variants import celery_app

        await cleanup.delete_amqp(
            self.ctx.amqp_url, [self.queue], celery_app.exchanges(self.queue)
        )


class DramatiqVariant(_NoticeVariant):
    key, label = "dramatiq", "Dramatiq pipeline"

    def __init__(self, ctx: Context, trial: str) -> None:
        super().__init__(ctx, trial)
        self._broker: Any = None

    async def start(self) -> None:
        from bench.variants import dramatiq_app

        await self._begin()
        self.children["dramatiq worker"] = spawn(
            "dramatiq",
            [str(VENV_BIN / "dramatiq"), "bench.variants.dramatiq_app",
             "--processes", "2", "--threads", "8", "--queues", self.queue],
            env={**self._env(), "BENCH_DRAMATIQ_WORKER": "1"},
            log_dir=self.log_dir,
        )
        assert self._executor is not None
        self._broker = await asyncio.get_running_loop().run_in_executor(
            self._executor, dramatiq_app.make_broker, self.ctx.amqp_url
        )

    def _send(self, token: str) -> None:
        from bench.variants import dramatiq_app

        dramatiq_app.start_pipeline(self._broker, self.queue, token)

    async def stop(self) -> None:
        if self._broker is not None and self._executor is not None:
            broker, self._broker = self._broker, None
            await asyncio.get_running_loop().run_in_executor(self._executor, broker.close)
        await super().stop()

    async def cleanup(self) -> None:
        from bench.variants import dramatiq_app

        await cleanup.delete_amqp(self.ctx.amqp_url, dramatiq_app.queues(self.queue))
