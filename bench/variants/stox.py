"""Stox Gateway: on RabbitMQ (gateway + three no-op worker processes) or embedded; with
`progress` > 0 each no-op step first reports that many progress updates (DESIGN §11), so
the `-progress` variants beside the plain ones measure what live progress costs. With
`reference` the steps are the reference services (image, AI copy, SEO: their own progress
reports, 3 from the AI service and 2 from SEO for the bench's image-less product) instead of
no-ops, and `report_progress` (`workers.progress`) turns their reports on or off.

Completion = the harness's WebSocket on every workflow receives `workflow_completed`.
"""

from __future__ import annotations

import os

import httpx

from bench import cleanup
from bench.load import StoxClient
from bench.procs import PYTHON, spawn
from bench.variants.base import Context, Variant, free_port, poll, slug

STEP_TYPES = ("image_processing", "ai_enhancement", "seo_generation")


def _python() -> list[str]:
    """`python -m stox_gateway`; with BENCH_STOX_SWITCH_INTERVAL (a diagnosis aid, seconds)
    the interpreter's GIL switch interval is set first (see bench/README.md, "Findings")."""
    interval = os.environ.get("BENCH_STOX_SWITCH_INTERVAL")
    if not interval:
        return [PYTHON, "-m", "stox_gateway"]
    code = (
        f"import sys, runpy; sys.setswitchinterval({float(interval)!r}); "
        "sys.argv[0] = 'stox_gateway'; runpy.run_module('stox_gateway', run_name='__main__')"
    )
    return [PYTHON, "-c", code]


class StoxVariant(Variant):
    has_websocket = True

    def __init__(
        self, ctx: Context, trial: str, *, bus: str, database: str, progress: int = 0,
        reference: bool = False, report_progress: bool = True,
    ) -> None:
        super().__init__(ctx, trial)
        self.bus, self.database, self.progress = bus, database, progress
        self.reference, self.report_progress = reference, report_progress
        self.port = 0
        self.client: StoxClient | None = None
        self.schema = slug(trial) if database == "postgresql" else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.log_dir / "stox-bench.yaml"  # so no ./config.yaml is picked up
        config.write_text("logging:\n  level: WARNING\n")
        env = {
            "STOX_CONFIG": str(config),
            "STOX_SERVER__HOST": "127.0.0.1",
            "STOX_SERVER__PORT": str(self.port),
            "STOX_SERVER__SHUTDOWN_TIMEOUT": "3s",
            "STOX_LOGGING__LEVEL": "WARNING",
            "STOX_LOGGING__FORMAT": "json",
            "STOX_EVENT_BUS": self.bus,
            "STOX_RABBITMQ__URL": self.ctx.amqp_url,
            "STOX_RABBITMQ__EXCHANGE": f"{self.trial}.x",
            "STOX_RABBITMQ__QUEUE_PREFIX": self.trial,
            "STOX_WORKERS__EMBEDDED": "true" if self.bus == "memory" else "false",
            "STOX_WORKERS__NOOP": "false" if self.reference else "true",
            "STOX_WORKERS__NOOP_PROGRESS": str(self.progress),
            "STOX_WORKERS__PROGRESS": "true" if self.report_progress else "false",
            # The push phase's fleet connects from one address: the per-address WebSocket limit
            # (websocket.max_per_client, 100) would cap it at 100 clients.
            "STOX_WEBSOCKET__MAX_PER_CLIENT": "100000",
            # The gRPC server (on 0.0.0.0:50052 by default) would collide with any other
            # gateway on this machine: a port of its own, on loopback.
            "STOX_GRPC__HOST": "127.0.0.1",
            "STOX_GRPC__PORT": "0",
        }
        if self.database == "postgresql":
            env["STOX_DATABASE__URL"] = self.ctx.pg_url
            env["STOX_DATABASE__SCHEMA_NAME"] = str(self.schema)
        else:
            env["STOX_DATABASE__URL"] = f"sqlite+aiosqlite:///{self.log_dir / 'stox.db'}"
        return env

    async def start(self) -> None:
        self.port = free_port()
        env = self._env()
        gateway = spawn("gateway", [*_python(), "serve"], env=env, log_dir=self.log_dir)
        self.children["gateway"] = gateway

        async def healthy() -> bool:
            self.check_alive()
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(f"{self.base_url}/health")).status_code == 200

        await poll(healthy, 60, "gateway /health")
        if self.bus == "rabbitmq":
            for step in STEP_TYPES:
                self.children[f"worker:{step}"] = spawn(
                    f"worker-{step}",
                    [*_python(), "worker", step, *([] if self.reference else ["--noop"])],
                    env=env,
                    log_dir=self.log_dir,
                )
        self.client = StoxClient(self.base_url, self.waiters)
        await self.client.start()

    async def run_one(self) -> float:
        assert self.client is not None
        return await self.client.run_one()

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.stop()
        # Workers first, so the gateway's queues are idle when it shuts down.
        for name, child in self.children.items():
            if name != "gateway":
                child.stop()
        if "gateway" in self.children:
            self.children["gateway"].stop()

    async def cleanup(self) -> None:
        if self.bus == "rabbitmq":
            base = [f"{self.trial}.step.{t}" for t in STEP_TYPES]
            base += [f"{self.trial}.gateway.completed", f"{self.trial}.gateway.progress"]
            queues = base + [f"{q}.dead" for q in base]
            exchanges = [f"{self.trial}.x", f"{self.trial}.x.dlx"]
            await cleanup.delete_amqp(self.ctx.amqp_url, queues, exchanges)
        if self.schema:
            await cleanup.drop_schemas(self.ctx.pg_url, [self.schema])
        for path in self.log_dir.glob("stox.db*"):
            path.unlink(missing_ok=True)

    def gateway_pid(self) -> int | None:
        child = self.children.get("gateway")
        return child.pid if child else None
