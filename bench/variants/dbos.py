"""DBOS Transact (the peer that checkpoints durable workflows in the same databases), three
no-op steps, synchronous API; see dbos_proc."""

from __future__ import annotations

import asyncio
import itertools

from bench import cleanup
from bench.procs import PYTHON, spawn
from bench.variants.base import Context, Variant, free_port, slug


class DbosVariant(Variant):
    def __init__(self, ctx: Context, trial: str, *, database: str) -> None:
        super().__init__(ctx, trial)
        self.database = database
        self.schema = slug(trial) if database == "postgresql" else None
        self._counter = itertools.count()
        self._writer: asyncio.StreamWriter | None = None

    def _url(self) -> str:
        if self.database == "postgresql":
            return self.ctx.pg_url.replace("+asyncpg", "")
        return f"sqlite:///{self.log_dir / 'dbos.sqlite'}"

    async def start(self) -> None:
        self.ctx.notices.on_notice = self.waiters.done
        port = free_port()
        env = {
            "BENCH_DBOS_URL": self._url(),
            "BENCH_DBOS_PORT": str(port),
            "BENCH_NOTIFY": self.ctx.notices.address,
        }
        if self.schema:
            env["BENCH_DBOS_SCHEMA"] = self.schema
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.children["dbos"] = spawn(
            "dbos", [PYTHON, "-m", "bench.variants.dbos_proc"], env=env, log_dir=self.log_dir
        )
        for _ in range(600):  # DBOS migrates its system database first
            self.check_alive()
            try:
                _, self._writer = await asyncio.open_connection("127.0.0.1", port)
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("DBOS did not start listening within 60 s")

    async def run_one(self) -> float:
        assert self._writer is not None
        token = f"{self.trial}:{next(self._counter)}"
        done = self.waiters.expect(token)
        self._writer.write(token.encode() + b"\n")
        await self._writer.drain()
        return await done

    async def stop(self) -> None:
        self.ctx.notices.on_notice = lambda _t, _at: None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        await super().stop()

    async def cleanup(self) -> None:
        if self.schema:
            await cleanup.drop_schemas(self.ctx.pg_url.replace("+asyncpg", ""), [self.schema])
