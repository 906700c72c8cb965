"""`GET /api/v1/workflows` (paged summaries, filters, search) and the bulk retry/cancel
routes, on SQLite and on PostgreSQL: the search runs on each database's own index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_auth import bearer, http, register, secured  # noqa: F401 - fixtures
from tests.api.test_workflow_routes import assert_error, complete, status
from tests.integration.conftest import drop_postgres_schema, unique
from tests.support import POSTGRES_URL, make_settings, require_server, running_gateway

PRODUCTS = [
    {"name": "Walnut desk lamp", "category": "Home & Living", "price": 89.9, "currency": "EUR"},
    {"name": "Red chair", "category": "Furniture", "price": 45},
    {"name": "Blue table", "category": "Furniture", "images": ["https://example.com/t.jpg"]},
    {"name": "Linen tote", "category": "Bags", "price": 12.5},
    {"name": "Café crème mug", "category": "Kitchen", "images": ["image1.jpg"]},
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    database: dict[str, Any] = {}
    if request.param == "postgres":
        require_server(5432, "PostgreSQL")
        database = {"url": POSTGRES_URL, "schema_name": unique("stox_test")}
    settings = make_settings(tmp_path, workers={"embedded": False}, **{"database": database})
    try:
        async with (
            running_gateway(settings) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as c,
        ):
            yield c
    finally:
        if database:
            await drop_postgres_schema(database["schema_name"])


async def seed(client: httpx.AsyncClient) -> list[str]:
    """The products, oldest first; the lamp's workflow fails on its first step."""
    ids = []
    for product in PRODUCTS:
        answer = await client.post("/api/v1/workflow/upload", json={"images": [], **product})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["workflow_id"])
    failed = await complete(
        client,
        await status(client, ids[0]),
        0,
        success=False,
        error="The image could not be downloaded\n\nConnectError('[Errno -2] Name or service not known')",
        retryable=False,
    )
    assert failed.status_code == 200, failed.text
    return ids


async def find(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/api/v1/workflows", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def names(page: dict[str, Any]) -> list[str]:
    return [item["name"] for item in page["items"]]


async def test_the_list_is_paged_with_a_total_and_rows_a_person_can_scan(
    client: httpx.AsyncClient,
) -> None:
    ids = await seed(client)
    first = await find(client, limit=2)
    assert first["total"] == 5
    assert (first["limit"], first["offset"]) == (2, 0)
    assert names(first) == ["Café crème mug", "Linen tote"]  # newest first
    last = await find(client, limit=2, offset=4)
    assert last["total"] == 5
    assert names(last) == ["Walnut desk lamp"]
    assert (await find(client, limit=2, offset=10)) == {
        "items": [],
        "total": 5,
        "total_exact": True,
        "limit": 2,
        "offset": 10,
    }

    lamp = last["items"][0]
    assert lamp["id"] == ids[0]
    assert lamp["status"] == "failed"
    assert lamp["price"] == 89.9
    # The currency is the stored product's: an upload without one gets shop.currency.
    assert lamp["currency"] == "EUR"
    assert lamp["failed_step"] == {
        "type": "image_processing",
        "reason": "The image could not be downloaded",
    }
    assert lamp["duration_seconds"] >= 0
    mug = first["items"][0]
    assert mug["thumbnail_url"] == "/media/image1.jpg"
    assert mug["failed_step"] is None
    assert mug["current_step"] == "image_processing"
    assert (mug["steps_completed"], mug["steps_total"]) == (0, 3)
    table = (await find(client, q="blue"))["items"][0]
    assert table["thumbnail_url"] is None  # a URL the browser is not sent to


async def test_filters_and_search_run_on_the_server(client: httpx.AsyncClient) -> None:
    await seed(client)
    failed = await find(client, status="failed")
    assert (failed["total"], names(failed)) == (1, ["Walnut desk lamp"])
    assert (await find(client, type="product_upload"))["total"] == 5
    assert (await find(client, type="no_such_type"))["total"] == 0
    assert (await find(client, created_from="2999-01-01T00:00:00Z"))["total"] == 0
    assert (await find(client, created_to="2000-01-01T00:00:00"))["total"] == 0
    assert (await find(client, created_from="2000-01-01T00:00:00+02:00"))["total"] == 5

    assert names(await find(client, q="LAMP")) == ["Walnut desk lamp"]
    assert names(await find(client, q="furn")) == ["Blue table", "Red chair"]  # category
    assert names(await find(client, q="home liv")) == ["Walnut desk lamp"]  # every word
    assert names(await find(client, q="crème café")) == ["Café crème mug"]
    assert (await find(client, q="chair lamp"))["total"] == 0
    assert (await find(client, q="furniture", status="processing", limit=1))["total"] == 2
    # Query syntax is not passed through: quotes, stars and operators are only punctuation.
    assert names(await find(client, q='"red" OR* (lamp')) == []
    assert names(await find(client, q="red' --")) == ["Red chair"]

    assert_error(await client.get("/api/v1/workflows", params={"created_from": "soon"}), 400)
    assert_error(await client.get("/api/v1/workflows", params={"limit": 0}), 400)
    assert_error(await client.get("/api/v1/workflows", params={"status": "lost"}), 400)
    assert_error(await client.get("/api/v1/workflows", params={"type": "a\x00b"}), 400)
    far = {"created_from": "0001-01-01T00:00:00+14:00"}
    assert_error(await client.get("/api/v1/workflows", params=far), 400)


async def test_bulk_retry_and_cancel_count_what_they_did_and_skipped(
    client: httpx.AsyncClient,
) -> None:
    ids = await seed(client)
    done = await status(client, ids[1])
    for index in range(3):
        done = await status(client, ids[1])
        assert (await complete(client, done, index)).status_code == 200
    assert (await status(client, ids[1]))["status"] == "completed"

    answer = await client.post("/api/v1/workflow/bulk/retry", json={"filter": {"status": "failed"}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "retried": 1,
        "skipped": 0,
        "not_found": 0,
        "matched": 1,
        "limited": False,
    }
    assert (await status(client, ids[0]))["status"] == "processing"

    unknown = "00000000-0000-0000-0000-000000000000"
    answer = await client.post(
        "/api/v1/workflow/bulk/retry", json={"ids": [ids[1], ids[2], unknown]}
    )
    assert answer.json() == {
        "retried": 0,
        "skipped": 2,  # completed, and processing: neither has failed
        "not_found": 1,
        "matched": 2,
        "limited": False,
    }

    answer = await client.post(
        "/api/v1/workflow/bulk/cancel", json={"filter": {"search": "furniture"}}
    )
    assert (answer.json()["cancelled"], answer.json()["skipped"]) == (1, 1)  # table; chair
    answer = await client.post("/api/v1/workflow/bulk/cancel", json={"filter": {}})
    assert answer.json() == {
        "cancelled": 3,  # the lamp (retried), the tote, the mug
        "skipped": 2,  # the completed chair, the table cancelled before
        "not_found": 0,
        "matched": 5,
        "limited": False,
    }
    statuses = {item["id"]: item["status"] for item in (await find(client))["items"]}
    assert sorted(statuses.values()) == ["cancelled"] * 4 + ["completed"]

    both = {"ids": [ids[0]], "filter": {}}
    assert_error(await client.post("/api/v1/workflow/bulk/retry", json=both), 400)
    assert_error(await client.post("/api/v1/workflow/bulk/retry", json={}), 400)
    assert_error(
        await client.post("/api/v1/workflow/bulk/cancel", json={"filter": {"status": "x"}}), 422
    )


async def test_the_list_and_bulk_actions_see_only_the_callers_workflows(
    http: httpx.AsyncClient,  # noqa: F811 - test_auth's fixture: a gateway with auth required
) -> None:
    ann, bob = await register(http, "ann3@example.com"), await register(http, "bob3@example.com")
    upload = await http.post("/api/v1/workflow/upload", json={"name": "Ann's"}, headers=bearer(ann))
    anns = upload.json()["workflow_id"]

    assert (await http.get("/api/v1/workflows")).status_code == 401
    assert (await http.get("/api/v1/workflows", headers=bearer(bob))).json()["total"] == 0
    mine = await http.get("/api/v1/workflows", params={"q": "ann"}, headers=bearer(ann))
    assert [item["id"] for item in mine.json()["items"]] == [anns]

    for body in ({"ids": [anns]}, {"filter": {}}):
        answer = await http.post("/api/v1/workflow/bulk/cancel", json=body, headers=bearer(bob))
        assert answer.status_code == 200, answer.text
        assert answer.json()["cancelled"] == 0
    assert answer.json()["matched"] == 0
    named = await http.post(
        "/api/v1/workflow/bulk/cancel", json={"ids": [anns]}, headers=bearer(bob)
    )
    assert named.json()["not_found"] == 1  # as the single route's 404
    answer = await http.post(
        "/api/v1/workflow/bulk/cancel", json={"ids": [anns]}, headers=bearer(ann)
    )
    assert answer.json()["cancelled"] == 1
