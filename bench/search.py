"""Time the list's search (`GET /api/v1/workflows?q=…`) over 1,000,000 workflows on PostgreSQL.

Seeds a schema of its own with one `INSERT … SELECT … FROM generate_series` (names and
categories from small word lists, so a word matches from a few hundred to ~80,000 rows), builds
the search index the way migration 0010 does, then times the store's own `find_workflows`
(a page of 50 and the total) for each search, and drops the schema at the end.

    .venv/bin/python bench/search.py                 # 1,000,000 rows, 20 runs per search
    .venv/bin/python bench/search.py --rows 100000 --runs 5 --pg-url postgresql+asyncpg://…
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.engine.models import WorkflowStatus
from stox_gateway.store.port import WorkflowQuery
from stox_gateway.store.sql import SqlStore

ADJECTIVES = "walnut red blue green oak linen vintage modern rustic classic compact deluxe"
MATERIALS = "wood steel glass cotton leather ceramic bamboo marble wool brass copper stone"
NOUNS = (
    "lamp chair table desk mug bowl vase tote rug shelf stool bench clock mirror plate "
    "cup jar basket blanket pillow frame candle tray hook box"
)
CATEGORIES = "Home Kitchen Garden Office Bags Lighting Furniture Decor Textiles Outdoor Bath Kids"

# (label, search words, extra filter)
SEARCHES: list[tuple[str, str, WorkflowStatus | None]] = [
    ("two words, ~0.3% of rows", "walnut lamp", None),
    ("one word, ~4%", "lamp", None),
    ("a prefix, ~4%", "lam", None),
    ("a category, ~8%", "kitchen", None),
    ("word + status failed", "lamp", WorkflowStatus.FAILED),
    ("no match", "zeppelin", None),
    ("no search: the first page of all", "", None),
    ("no search, status failed", "", WorkflowStatus.FAILED),
]


def _sql_words(words: str) -> str:
    return "ARRAY[" + ",".join(f"'{w}'" for w in words.split()) + "]"


SEED = f"""
INSERT INTO workflows (id, type, status, product, correlation_id, seq, error, created_at,
                       updated_at, completed_at)
SELECT md5(i::text)::uuid::text, 'product_upload',
       (ARRAY['completed','completed','completed','processing','failed','cancelled'])[i % 6 + 1],
       jsonb_build_object(
         'name', initcap(a[i % 12 + 1] || ' ' || m[(i / 12) % 12 + 1] || ' '
                         || n[(i / 144) % 25 + 1]),
         'category', c[(i / 7) % 12 + 1], 'price', (i % 10000) / 100.0,
         'images', jsonb_build_array('image' || (i % 2 + 1) || '.jpg')),
       'bench-' || i, 0, NULL,
       now() - make_interval(secs => i), now() - make_interval(secs => i), NULL
FROM generate_series(1, :rows) AS i,
     (SELECT {_sql_words(ADJECTIVES)} AS a, {_sql_words(MATERIALS)} AS m,
             {_sql_words(NOUNS)} AS n, {_sql_words(CATEGORIES)} AS c) AS words
"""


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    text = f"load average {one:.2f} (1 min) / {five:.2f} (5 min) on {os.cpu_count()} cores"
    pressure = Path("/proc/pressure/cpu")
    if pressure.exists():
        some = pressure.read_text().splitlines()[0]
        text += f"; CPU pressure {some.split()[1]}"  # avg10=…
    return text


async def main(args: argparse.Namespace) -> None:
    schema = args.schema or f"bench_search_{uuid.uuid4().hex[:8]}"
    store = SqlStore(args.pg_url, schema=schema)
    admin = create_async_engine(args.pg_url)
    try:
        await store.start()  # the migrations: tables and the search index (empty)
        if args.schema:  # seeded by an earlier run (--keep-schema)
            await measure(store, args)
            return
        started = time.perf_counter()
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ix_workflows_search"))  # built after: faster
            await conn.execute(sa.text(SEED), {"rows": args.rows})
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        async with store.engine.begin() as conn:
            for statement in type(store).search_index_ddl():
                await conn.execute(sa.text(statement))
        async with store.engine.connect() as conn:  # as autovacuum leaves a settled table
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE workflows"))
        indexed = time.perf_counter() - started
        print(f"{args.rows:,} workflows seeded in {seeded:.1f} s, index built in {indexed:.1f} s")
        await measure(store, args)
    finally:
        await store.close()
        if args.keep_schema or args.schema:
            print(f"kept schema {schema} (drop it: DROP SCHEMA {schema} CASCADE)")
            await admin.dispose()
        else:
            async with admin.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()


async def measure(store: SqlStore, args: argparse.Namespace) -> None:
    print(f"machine: {machine_load()}\n")
    print("| search | matches | median ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for label, words, status in SEARCHES:
        query = WorkflowQuery(search=words, status=status)
        await store.find_workflows(query, limit=50)  # warm: plan and pages cached
        times = []
        total = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            page = await store.find_workflows(query, limit=50)
            times.append((time.perf_counter() - started) * 1000)
            total = page.total
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(
            f"| {label}: `{words}`{' + ' + str(status) if status else ''} | {total:,} "
            f"| {statistics.median(times):.1f} | {p95:.1f} | {times[-1]:.1f} |"
        )
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine after: {machine_load()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep-schema", action="store_true", help="leave the seeded schema")
    parser.add_argument("--schema", help="measure a schema an earlier --keep-schema left")
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    asyncio.run(main(parser.parse_args()))
