"""Duplicate and reordered completions, over HTTP, gRPC and AMQP at once.

For workflows that are running, while the real services work on them, this plays a confused
service (or three): for the step in hand it sends

* out of order, first: a success for the *next* step, a success for an attempt that does not
  exist yet, and a report with the wrong step type — all to be refused;
* then the same success for the current attempt twice on every transport at once (six copies,
  racing each other and the real service's own report) — one of them, or the service's, is
  applied; every other is an answered repeat;
* then, late: the same success once more, and a failure for that attempt — a repeat, and a
  refusal;
* for some workflows it cancels first, then sends the current step's success on every
  transport — to be refused (the workflow was cancelled).

Refused means a 4xx on HTTP, FAILED_PRECONDITION / NOT_FOUND on gRPC and a dead letter with a
reason on AMQP; a 5xx, another gRPC code, or a dead letter from an error (not a refusal) is a
protocol error. "Applied" answers (HTTP "processed", gRPC `applied=true`) are counted per step
attempt: more than one is a duplicated state change even before the database is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import grpc
import httpx
from google.protobuf import struct_pb2

from stox_gateway.grpc.generated.stox.v1 import workflow_pb2, workflow_pb2_grpc

TRANSPORTS = ("http", "grpc", "amqp")
# Kinds of report the script sends; the ones the gateway must refuse:
REFUSED_BY_DESIGN = frozenset({"stale", "mismatch", "late_failure", "after_cancel"})
# "reorder" is refused unless the real service completed the step in between (then it is the
# in-order report of the next step and may be applied): counted, not required to be refused.

# Dead-letter reasons that are refusals (the engine's CompletionRejected / WorkflowNotFound
# messages); anything else (an exception's class name first) is an error.
_REFUSAL_PREFIXES = ("step ", "workflow ", "malformed step.completed", "refused:")


def is_refusal_reason(reason: str) -> bool:
    return reason.startswith(_REFUSAL_PREFIXES)


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)  # "<transport> <kind>"
    outcomes: Counter[str] = field(default_factory=Counter)  # "<transport> <outcome>"
    errors: list[str] = field(default_factory=list)  # protocol errors, described
    applied: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (wf, step, attempt)
    designed_refusal_accepted: list[str] = field(default_factory=list)
    reorder_applied: int = 0
    attacked: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)

    def record(self, transport: str, kind: str, outcome: str, key: tuple[str, str, int]) -> None:
        self.outcomes[f"{transport} {outcome}"] += 1
        if outcome == "applied":
            self.applied[key] += 1
            if kind == "reorder":
                self.reorder_applied += 1
        if kind in REFUSED_BY_DESIGN and outcome in ("applied", "repeat"):
            self.designed_refusal_accepted.append(f"{transport} {kind} {key}")

    @property
    def applied_twice(self) -> list[tuple[str, str, int]]:
        return [k for k, n in self.applied.items() if n > 1]

    def sent_by_transport(self) -> Counter[str]:
        by: Counter[str] = Counter()
        for k, n in self.sent.items():
            by[k.split()[0]] += n
        return by


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


class CompletionChaos:
    def __init__(
        self,
        *,
        http_url: str,
        grpc_target: str,
        amqp_url: str,
        exchange: str,
        max_attempts: int,
        cancel_every: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self.http_url, self.grpc_target = http_url, grpc_target
        self.amqp_url, self.exchange_name = amqp_url, exchange
        self.max_attempts = max_attempts
        self.cancel_every = cancel_every
        self.rng = rng or random.Random()
        self.tally = Tally()

    async def run(self, *, until: float, max_workflows: int, concurrency: int = 8) -> Tally:
        """Attack running workflows until `until` (monotonic) or `max_workflows` were done."""
        self._http = httpx.AsyncClient(base_url=self.http_url, timeout=10)
        self._channel = grpc.aio.insecure_channel(self.grpc_target)
        self._stub = workflow_pb2_grpc.WorkflowServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._amqp = await aio_pika.connect(
            self.amqp_url, timeout=10, client_properties={"connection_name": "chaos-completions"}
        )
        amqp_channel = await self._amqp.channel(publisher_confirms=True)
        self._exchange = await amqp_channel.get_exchange(self.exchange_name, ensure=False)
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def guarded(view: dict[str, Any], cancel: bool) -> None:
            async with slots:
                try:
                    await self._attack(view, cancel=cancel)
                except Exception as exc:  # a harness fault: reported, never hidden
                    self.tally.errors.append(f"harness: {type(exc).__name__}: {exc}")

        try:
            n = 0
            while time.monotonic() < until and n < max_workflows:
                try:
                    answer = await self._http.get(
                        "/api/v1/workflow/list", params={"status": "processing", "limit": 100}
                    )
                    views = answer.json() if answer.status_code == 200 else []
                except (httpx.HTTPError, ValueError):
                    views = []
                for view in views:
                    if view["id"] in self.tally.attacked or n >= max_workflows:
                        continue
                    self.tally.attacked.add(view["id"])
                    cancel = (
                        self.cancel_every > 0 and n % self.cancel_every == self.cancel_every - 1
                    )
                    n += 1
                    task = asyncio.create_task(guarded(view, cancel))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0.15)
            if tasks:
                await asyncio.wait(tasks, timeout=60)
        finally:
            for task in tasks:
                task.cancel()
            await self._http.aclose()
            await self._channel.close()
            await self._amqp.close()
        return self.tally

    # -- one workflow --------------------------------------------------------------------

    async def _attack(self, listed: dict[str, Any], *, cancel: bool) -> None:
        # The list may be a moment old: aim at the step running now.
        answer = await self._http.get(
            "/api/v1/workflow/status", params={"workflow_id": listed["id"]}
        )
        if answer.status_code != 200:
            return
        view = answer.json()
        steps = view["steps"]
        running = [s for s in steps if s["status"] == "running"]
        if not running:
            return
        step = running[0]
        position = steps.index(step)
        following = steps[position + 1] if position + 1 < len(steps) else None
        wf, attempt = view["id"], int(step["attempts"])

        def report(kind: str, target: dict[str, Any], **fields: Any) -> dict[str, Any]:
            body = {
                "workflow_id": wf,
                "step_id": target["id"],
                "step_type": target["type"],
                "success": True,
                "result": {"chaos": kind},
                "attempt": attempt,
                "retryable": True,
                **fields,
            }
            return {"kind": kind, "body": body}

        if cancel:
            answer = await self._http.post(f"/api/v1/workflow/{wf}/cancel")
            self.tally.outcomes[f"cancel {answer.status_code}"] += 1
            if answer.status_code == 200:
                self.tally.cancelled.add(wf)
                # The step that was running when the cancel landed (the service may have moved
                # the workflow on since the list was read): its report must now be refused.
                stopped = [s for s in answer.json()["steps"] if s["error"] == "cancelled"]
                if stopped:
                    attempt = int(stopped[0]["attempts"])
                    await self._everywhere([report("after_cancel", stopped[0], attempt=attempt)])
            return

        # Out of order first.
        wrong_type = next(
            t for t in ("image_processing", "ai_enhancement", "seo_generation") if t != step["type"]
        )
        early = [
            report("stale", step, attempt=self.max_attempts + 1),
            report("mismatch", step, step_type=wrong_type),
        ]
        if following is not None:
            early.append(report("reorder", following, attempt=1))
        await self._everywhere(early)
        # The same success, twice on every transport, all at once.
        await self._everywhere([report("duplicate", step), report("duplicate", step)])
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        # Late: the same success once more, and a failure of the attempt that succeeded.
        await self._everywhere(
            [
                report("repeat", step),
                report(
                    "late_failure", step, success=False, result=None, error="chaos: late failure"
                ),
            ]
        )

    async def _everywhere(self, reports: list[dict[str, Any]]) -> None:
        calls = []
        for item in reports:
            for transport in TRANSPORTS:
                self.tally.sent[f"{transport} {item['kind']}"] += 1
                calls.append(self._send(transport, item["kind"], item["body"]))
        self.rng.shuffle(calls)
        await asyncio.gather(*calls)

    async def _send(self, transport: str, kind: str, body: dict[str, Any]) -> None:
        key = (body["workflow_id"], body["step_id"], int(body["attempt"]))
        if transport == "http":
            outcome = await self._http_send(body)
        elif transport == "grpc":
            outcome = await self._grpc_send(body)
        else:
            outcome = await self._amqp_send(body)
        if outcome.startswith("error"):
            self.tally.errors.append(f"{transport} {kind}: {outcome}")
            outcome = "error"
        self.tally.record(transport, kind, outcome, key)

    async def _http_send(self, body: dict[str, Any]) -> str:
        try:
            answer = await self._http.post("/api/v1/workflow/step-completed", json=body)
        except httpx.HTTPError as exc:
            return f"error: no answer ({type(exc).__name__})"
        if answer.status_code == 200:
            applied = answer.json().get("message") == "Step completion processed successfully"
            return "applied" if applied else "repeat"
        if 400 <= answer.status_code < 500:
            return "refused"
        return f"error: HTTP {answer.status_code} {answer.text[:200]}"

    async def _grpc_send(self, body: dict[str, Any]) -> str:
        request = workflow_pb2.CompleteStepRequest(
            workflow_id=body["workflow_id"],
            step_id=body["step_id"],
            step_type=body["step_type"],
            success=body["success"],
            result=_struct(body["result"] or {}),
            error=body.get("error") or "",
            attempt=body["attempt"],
            retryable=body["retryable"],
        )
        try:
            answer = await self._stub.CompleteStep(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                return "refused"
            return f"error: gRPC {exc.code().name} {exc.details()}"
        return "applied" if answer.applied else "repeat"

    async def _amqp_send(self, body: dict[str, Any]) -> str:
        envelope = {
            **body,
            "event_id": str(uuid.uuid4()),
            "event_type": "step.completed",
            "correlation_id": body["workflow_id"],
            "timestamp": datetime.now(UTC).isoformat(),
        }
        import json

        message = aio_pika.Message(
            body=json.dumps(envelope).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope["event_id"],
            correlation_id=body["workflow_id"],
            type="step.completed",
        )
        try:
            await self._exchange.publish(message, routing_key="step.completed", timeout=10)
        except Exception as exc:
            return f"error: publish failed ({type(exc).__name__}: {exc})"
        return "sent"  # its fate is read from the dead-letter queue at the end


def amqp_verdict(tally: Tally, dead_letters: list[dict[str, Any]]) -> dict[str, int]:
    """What became of the AMQP completions: refusals and errors in `<queue>.dead`."""
    refused = sum(1 for d in dead_letters if is_refusal_reason(d["reason"]))
    errors = len(dead_letters) - refused
    return {
        "sent": tally.sent_by_transport()["amqp"],
        "dead_refused": refused,
        "dead_errors": errors,
    }


async def _main() -> None:  # pragma: no cover - manual use against a running system
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--http", required=True, help="a gateway, e.g. http://127.0.0.1:8080")
    p.add_argument("--grpc", required=True, help="a gateway's gRPC, e.g. 127.0.0.1:50052")
    p.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--exchange", default="workflow_exchange")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--workflows", type=int, default=20)
    p.add_argument("--max-attempts", type=int, default=3)
    args = p.parse_args()
    chaos = CompletionChaos(
        http_url=args.http,
        grpc_target=args.grpc,
        amqp_url=args.amqp,
        exchange=args.exchange,
        max_attempts=args.max_attempts,
    )
    tally = await chaos.run(until=time.monotonic() + args.seconds, max_workflows=args.workflows)
    print(dict(tally.sent), dict(tally.outcomes), tally.errors, tally.applied_twice, sep="\n")


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
