"""The clients: upload products at a steady rate while faults happen.

Each upload carries an `Idempotency-Key` of its own. When it gets no answer (the gateway died,
the connection broke) or a 5xx/429, the client tries again with the same key and body, on the
next gateway when there are several (fail-over), until a bounded number of tries or time.
`accepted` is what was answered 202, with the workflow id the answer named.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Upload:
    index: int
    key: str
    body: dict[str, Any]


@dataclass
class LoadResult:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key → workflow id
    accepted_at: dict[str, float] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "202", "503", "no answer", ...
    retried: int = 0  # uploads that needed more than one try
    rejected: dict[str, str] = field(default_factory=dict)  # key → a 4xx answer (not retried)
    unanswered: list[str] = field(default_factory=list)  # keys that never got an answer
    replays: int = 0  # accepted uploads sent again on purpose with the same key
    replay_mismatches: list[str] = field(default_factory=list)  # … answered with another id

    @property
    def ids(self) -> list[str]:
        return list(self.accepted.values())

    def summary(self) -> str:
        others = {k: v for k, v in self.answers.items() if k != "202"}
        text = f"{len(self.accepted)} accepted"
        if self.retried:
            failed = ", ".join(f"{k} ×{v}" for k, v in sorted(others.items()))
            text += f", {self.retried} retried with their key ({failed})"
        if self.rejected:
            text += f", {len(self.rejected)} refused"
        if self.unanswered:
            text += f", {len(self.unanswered)} never answered"
        return text


def products(tag: str, count: int, *, poison_every: int = 0) -> list[Upload]:
    uploads = []
    for i in range(count):
        poison = poison_every > 0 and i % poison_every == poison_every // 2
        name = f"poison-{tag}-{i}" if poison else f"chaos-{tag}-{i}"
        body = {
            "name": name,
            "description": "fault injection",
            "price": float(i),
            "category": "chaos",
        }
        uploads.append(Upload(i, f"{tag}-{i}", body))
    return uploads


class Load:
    """Clients uploading `uploads` spread over `duration` seconds; `submit` adds one more
    upload at any time (a fault that needs traffic at a given moment)."""

    def __init__(
        self,
        urls: list[str],
        *,
        concurrency: int = 24,
        per_upload_timeout: float = 120.0,
        max_tries: int = 200,
        replay_every: int = 10,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = urls
        self.result = LoadResult()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout, self._max_tries, self._replay_every = (
            per_upload_timeout,
            max_tries,
            replay_every,
        )
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._clients = [httpx.AsyncClient(base_url=u, timeout=10, limits=limits) for u in urls]
        self._tasks: set[asyncio.Task[None]] = set()
        self._extra = 0

    async def run(self, uploads: list[Upload], duration: float) -> LoadResult:
        """Send `uploads` spread evenly over `duration`; wait until each was answered or gave
        up (then `finish`)."""
        started = time.monotonic()
        spacing = duration / max(1, len(uploads))

        async def scheduled(upload: Upload) -> None:
            await asyncio.sleep(max(0.0, started + upload.index * spacing - time.monotonic()))
            await self._one(upload)

        await asyncio.gather(*(scheduled(u) for u in uploads))
        return self.result

    async def finish(self) -> LoadResult:
        """Wait for the submitted uploads, then close the clients."""
        try:
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            for client in self._clients:
                with contextlib.suppress(Exception):
                    await client.aclose()
        return self.result

    def submit(self, tag: str) -> None:
        """One more upload, now (it counts like the others)."""
        self._extra += 1
        index = 100_000 + self._extra
        upload = Upload(
            index,
            f"{tag}-extra-{self._extra}",
            {"name": f"chaos-{tag}-extra-{self._extra}", "price": 1.0},
        )
        task = asyncio.create_task(self._one(upload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, client: httpx.AsyncClient, upload: Upload) -> httpx.Response | None:
        try:
            return await client.post(
                "/api/v1/workflow/upload",
                json=upload.body,
                headers={"Idempotency-Key": upload.key},
            )
        except httpx.HTTPError:
            return None

    async def _one(self, upload: Upload) -> None:
        result, clients = self.result, self._clients
        deadline = time.monotonic() + self._timeout
        tries = 0
        async with self._slots:
            while tries < self._max_tries and time.monotonic() < deadline:
                client = clients[(upload.index + tries) % len(clients)]
                tries += 1
                answer = await self._send(client, upload)
                code = "no answer" if answer is None else str(answer.status_code)
                result.answers[code] += 1
                if answer is not None and answer.status_code == 202:
                    result.accepted[upload.key] = str(answer.json()["workflow_id"])
                    result.accepted_at[upload.key] = time.time()
                    if tries > 1:
                        result.retried += 1
                    break
                if (
                    answer is not None
                    and 400 <= answer.status_code < 500
                    and answer.status_code != 429
                ):
                    result.rejected[upload.key] = f"{answer.status_code} {answer.text[:200]}"
                    return
                await asyncio.sleep(min(2.0, 0.1 * 2 ** min(tries, 5)) * (0.5 + self._rng.random()))
            else:
                result.unanswered.append(upload.key)
                return
        # Now and then a client that did not see the answer sends it again: same workflow.
        if self._replay_every and upload.index % self._replay_every == 0:
            for attempt in range(20):
                answer = await self._send(
                    clients[(upload.index + attempt + 1) % len(clients)], upload
                )
                if answer is not None and answer.status_code == 202:
                    result.replays += 1
                    if answer.json()["workflow_id"] != result.accepted[upload.key]:
                        result.replay_mismatches.append(upload.key)
                    break
                await asyncio.sleep(0.5)
