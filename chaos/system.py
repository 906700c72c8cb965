"""One scenario's system: names of its own, gateway and service processes, and their clean-up.

Every scenario runs on a fresh exchange, fresh queues (`<prefix>.*`) and a fresh PostgreSQL
schema, all carrying the run's tag, so nothing of one scenario (a dead letter, a late message,
an event row) is counted in another, and `servers.sweep` can find every name at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from chaos import procs, servers

STEPS = ("image_processing", "ai_enhancement", "seo_generation")
FINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Deadline of one step attempt. It must outlast the faults that are not about deadlines (a
# gateway or service restart takes 5–9 s on a busy 2-core machine, an aio-pika reconnect 5 s);
# otherwise a slow restart, not the fault, decides the outcome. Still short enough that the
# rogue consumer's swallowed step is retried within the drain. `--step-timeout` changes it.
DEFAULT_STEP_TIMEOUT = "15s"


@dataclass
class StepPolicy:
    timeout: str = DEFAULT_STEP_TIMEOUT
    max_attempts: int = 5


@dataclass
class SystemConfig:
    amqp_url: str
    pg_url: str
    noop_delay: str = "50ms"
    steps: dict[str, StepPolicy] = field(default_factory=lambda: {s: StepPolicy() for s in STEPS})
    retry_backoff: str = "200ms"
    sweep_interval: str = "500ms"
    rabbitmq_retry_delay: str = "500ms"
    gateway_log_level: str = "WARNING"
    service_log_level: str = "INFO"  # `worker.repeat_answered_from_journal` is an info line


@dataclass
class Gateway:
    """A gateway slot: its ports stay the same across restarts, so clients keep their URLs."""

    name: str
    port: int
    grpc_port: int
    child: procs.Child | None = None
    generation: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class Service:
    step: str
    kind: str  # "noop" (stox-gateway worker --noop) | "poison" (chaos.poison_service)
    child: procs.Child | None = None
    generation: int = 0


class System:
    def __init__(self, config: SystemConfig, tag: str, workdir: Path) -> None:
        self.config = config
        self.tag = tag  # unique per scenario: names of queues, exchange, schema
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.prefix = tag
        self.exchange = f"{tag}_exchange"
        self.schema = tag
        self.gateways: list[Gateway] = []
        self.services: list[Service] = []
        self.rogues: list[procs.Child] = []
        self.retired: list[procs.Child] = []  # killed or stopped generations, for their logs

    # -- environment ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        c = self.config
        steps = {
            k: {"timeout": v.timeout, "max_attempts": v.max_attempts} for k, v in c.steps.items()
        }
        return {
            "STOX_EVENT_BUS": "rabbitmq",
            "STOX_RABBITMQ__URL": c.amqp_url,
            "STOX_RABBITMQ__EXCHANGE": self.exchange,
            "STOX_RABBITMQ__QUEUE_PREFIX": self.prefix,
            "STOX_RABBITMQ__RETRY_DELAY": c.rabbitmq_retry_delay,
            "STOX_DATABASE__URL": c.pg_url,
            "STOX_DATABASE__SCHEMA_NAME": self.schema,
            "STOX_DATABASE__POOL_SIZE": "5",
            "STOX_WORKERS__EMBEDDED": "false",
            "STOX_WORKFLOW__STEPS": json.dumps(steps),
            "STOX_WORKFLOW__RETRY_BACKOFF": c.retry_backoff,
            "STOX_WORKFLOW__SWEEP_INTERVAL": c.sweep_interval,
            "STOX_LOGGING__FORMAT": "json",
            "STOX_SERVER__ENVIRONMENT": "test",
        }

    def journal(self, step: str) -> Path:
        return self.workdir / f"effects-{step}.sqlite"

    @property
    def journals(self) -> list[Path]:
        return [self.journal(s) for s in STEPS if self.journal(s).exists()]

    def step_queue(self, step: str) -> str:
        return f"{self.prefix}.step.{step}"

    @property
    def completed_queue(self) -> str:
        return f"{self.prefix}.gateway.completed"

    @property
    def durable_queues(self) -> list[str]:
        names = [self.step_queue(s) for s in STEPS] + [self.completed_queue]
        return names + [f"{n}.dead" for n in names]

    # -- gateways ------------------------------------------------------------------------

    def add_gateway(self, name: str) -> Gateway:
        gateway = Gateway(name, free_port(), free_port())
        self.gateways.append(gateway)
        return gateway

    def spawn_gateway(self, gateway: Gateway, **extra_env: str) -> procs.Child:
        """Start (or restart) a gateway process in its slot; does not wait."""
        if gateway.child is not None:
            self.retired.append(gateway.child)
        gateway.generation += 1
        env = {
            **self.env,
            "STOX_LOGGING__LEVEL": self.config.gateway_log_level,
            "STOX_SERVER__HOST": "127.0.0.1",
            "STOX_SERVER__PORT": str(gateway.port),
            "STOX_GRPC__HOST": "127.0.0.1",
            "STOX_GRPC__PORT": str(gateway.grpc_port),
            "STOX_REPLICA_ID": f"{self.tag}-{gateway.name}-{gateway.generation}",
            **extra_env,
        }
        gateway.child = procs.spawn(
            f"{gateway.name}-{gateway.generation}",
            ["-m", "stox_gateway", "serve"],
            env=env,
            log_path=self.workdir / f"{gateway.name}-{gateway.generation}.log",
        )
        return gateway.child

    async def wait_healthy(self, gateway: Gateway, timeout: float = 90.0) -> float:
        """Poll `/health` until 200; the wall time it answered. Raises if the process died."""
        deadline = time.monotonic() + timeout
        expected = f"{self.tag}-{gateway.name}-{gateway.generation}"
        async with httpx.AsyncClient(timeout=3) as client:
            while time.monotonic() < deadline:
                child = gateway.child
                if child is None or not child.alive():
                    code = child.returncode if child else None
                    raise RuntimeError(
                        f"{gateway.name} exited ({code}) before it was healthy:\n"
                        + (child.tail() if child else "")
                    )
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = await client.get(f"{gateway.url}/health")
                    # From this process, not another run's gateway that got the same port.
                    if answer.status_code == 200 and answer.json().get("replica_id") == expected:
                        return time.time()
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{gateway.name} not healthy within {timeout:g}s")

    async def start_gateway(self, gateway: Gateway, **extra_env: str) -> float:
        self.spawn_gateway(gateway, **extra_env)
        return await self.wait_healthy(gateway)

    # -- services ------------------------------------------------------------------------

    def add_service(self, step: str, kind: str = "noop") -> Service:
        service = Service(step, kind)
        self.services.append(service)
        return service

    def spawn_service(self, service: Service) -> procs.Child:
        if service.child is not None:
            self.retired.append(service.child)
        service.generation += 1
        env = {
            **self.env,
            "STOX_LOGGING__LEVEL": self.config.service_log_level,
            "STOX_WORKERS__EFFECTS_LOG": str(self.journal(service.step)),
            "STOX_WORKERS__NOOP_DELAY": self.config.noop_delay,
        }
        if service.kind == "poison":
            argv = ["-m", "chaos.poison_service", service.step]
        else:
            argv = ["-m", "stox_gateway", "worker", service.step, "--noop"]
        service.child = procs.spawn(
            f"service-{service.step}-{service.generation}",
            argv,
            env=env,
            log_path=self.workdir / f"service-{service.step}-{service.generation}.log",
        )
        return service.child

    async def wait_consuming(self, service: Service, timeout: float = 60.0) -> None:
        """Until the service logged `worker.started` (its consumer is on the queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = service.child
            assert child is not None
            if "worker.started" in child.log():
                return
            if not child.alive():
                raise RuntimeError(f"service {service.step} exited early:\n{child.tail()}")
            await asyncio.sleep(0.1)
        raise RuntimeError(f"service {service.step} did not start within {timeout:g}s")

    # -- the rogue consumer --------------------------------------------------------------

    def spawn_rogue(self, step: str = "image_processing") -> procs.Child:
        n = len(self.rogues) + 1
        child = procs.spawn(
            f"rogue-{n}",
            ["-m", "chaos.rogue_consumer", self.config.amqp_url, self.step_queue(step)],
            env={},
            log_path=self.workdir / f"rogue-{n}.log",
        )
        self.rogues.append(child)
        return child

    # -- everything ----------------------------------------------------------------------

    @property
    def children(self) -> list[procs.Child]:
        current = [g.child for g in self.gateways if g.child] + [
            s.child for s in self.services if s.child
        ]
        return [*self.retired, *current, *self.rogues]

    def pids(self) -> list[int]:
        return [c.pid for c in self.children if c.alive()]

    def stop_all(self, grace: float = 15.0) -> None:
        """SIGTERM: services first (they finish the step in hand and report), then gateways."""
        for service in self.services:
            if service.child and service.child.alive():
                service.child.popen.send_signal(15)
        for service in self.services:
            if service.child:
                service.child.stop(grace)
        for gateway in self.gateways:
            if gateway.child and gateway.child.alive():
                gateway.child.popen.send_signal(15)
        for child in self.children:
            child.stop(grace)

    async def queue_depths(self) -> dict[str, int]:
        """Ready messages per durable queue (passive declares; missing queues are skipped)."""
        depths: dict[str, int] = {}
        connection = await aio_pika.connect(self.config.amqp_url, timeout=10)
        try:
            for name in self.durable_queues:
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(name, passive=True)
                    depths[name] = int(queue.declaration_result.message_count or 0)
                except Exception:
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
        finally:
            await connection.close()
        return depths

    async def take_dead_letters(self, queue: str, limit: int = 10_000) -> list[dict[str, Any]]:
        """Empty `<queue>.dead`: each dead letter's body and `x-stox-dead-reason`."""
        found: list[dict[str, Any]] = []
        connection = await aio_pika.connect(self.config.amqp_url, timeout=10)
        try:
            channel = await connection.channel()
            try:
                dead = await channel.declare_queue(f"{queue}.dead", passive=True)
            except Exception:
                return found
            while len(found) < limit:
                message = await dead.get(no_ack=True, fail=False, timeout=10)
                if message is None:
                    break
                headers = message.headers or {}
                found.append(
                    {
                        "reason": str(headers.get("x-stox-dead-reason", "") or ""),
                        "body": message.body.decode(errors="replace"),
                        "message_id": message.message_id,
                    }
                )
        finally:
            await connection.close()
        return found

    async def cleanup(self) -> None:
        """Delete this scenario's queues, exchanges and schema (processes must be stopped)."""
        with contextlib.suppress(Exception):
            await servers.delete_amqp(
                self.config.amqp_url, self.durable_queues, [self.exchange, f"{self.exchange}.dlx"]
            )
        with contextlib.suppress(Exception):
            await servers.drop_schemas(self.config.pg_url, [self.schema])
