"""The rate limit: a burst goes through, then 429 with Retry-After; health is never limited."""

from __future__ import annotations

from pathlib import Path

import httpx

from stox_gateway.api.rate_limit import TokenBuckets
from tests.support import make_settings, running_gateway


def test_a_bucket_refills_at_its_rate() -> None:
    buckets = TokenBuckets(rate=2, burst=2)
    assert buckets.take("a", now=0) == 0
    assert buckets.take("a", now=0) == 0
    assert buckets.take("a", now=0) == 0.5  # one token comes back after half a second
    assert buckets.take("b", now=0) == 0  # another client has its own bucket
    assert buckets.take("a", now=0.5) == 0


async def test_past_the_burst_the_api_answers_429(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, workers={"embedded": False}, server={"rate_limit": 1, "rate_limit_burst": 3}
    )
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        answers = [await http.get("/api/v1/workflow/list") for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].json()["error"]["code"] == "too_many_requests"
        assert (await http.get("/health")).status_code == 200
