"""`DatabaseMediaStore`: media as chunked BLOBs in the gateway's own database (bytea in
PostgreSQL, BLOB in SQLite), so every gateway and worker that reaches the database serves them.

A write replaces the name's blob in one transaction; a read takes one chunk per short read
transaction, so a large file never holds a connection (or the SQLite lock) while it is sent.
The statements are the same for both databases; they run through the store's own paths
(`SqlStore.run_read` / `run_write`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from stox_gateway.engine.errors import Unavailable
from stox_gateway.media.port import MediaFile, MediaUnavailable, valid_name
from stox_gateway.store.sql import SqlStore
from stox_gateway.store.tables import media_chunks, media_objects

DEFAULT_CHUNK = 256 * 1024


class DatabaseMediaStore:
    def __init__(
        self,
        store: SqlStore | None = None,
        *,
        url: str | None = None,
        schema: str | None = None,
        chunk_bytes: int = DEFAULT_CHUNK,
    ) -> None:
        """On a running gateway's `store`; or, in a worker process, on a store of its own for
        `url`, opened (and migrated) at first use."""
        if store is None and url is None:
            raise ValueError("a DatabaseMediaStore needs a store or a database URL")
        self._store, self._url, self._schema = store, url, schema
        self._owns_store = store is None
        self._opening = asyncio.Lock()
        self.chunk_bytes = chunk_bytes

    async def _ready(self) -> SqlStore:
        if self._store is not None:
            return self._store
        async with self._opening:
            if self._store is None:
                assert self._url is not None
                store = SqlStore(self._url, schema=self._schema, pool_size=2)
                await store.start()
                self._store = store
        return self._store

    async def _read(self, fn: Any) -> Any:
        try:
            return await (await self._ready()).run_read(fn)
        except (Unavailable, DBAPIError, OSError) as exc:
            raise MediaUnavailable(f"media store: {type(exc).__name__}") from exc

    async def _write(self, fn: Any) -> Any:
        try:
            return await (await self._ready()).run_write(fn)
        except (Unavailable, DBAPIError, OSError) as exc:
            raise MediaUnavailable(f"media store: {type(exc).__name__}") from exc

    async def put(self, name: str, data: bytes, *, owner: str | None = None) -> None:
        if not valid_name(name):
            raise ValueError(f"invalid media name {name!r}")
        blob_id = str(uuid.uuid4())
        size = self.chunk_bytes
        chunks = [
            {"blob_id": blob_id, "position": i, "data": data[start : start + size]}
            for i, start in enumerate(range(0, len(data), size))
        ]
        row = {
            "name": name,
            "blob_id": blob_id,
            "workflow_id": owner,
            "size": len(data),
            "chunks": len(chunks),
            "created_at": datetime.now(UTC),
        }

        def write(conn: sa.Connection) -> None:
            _delete_where(conn, media_objects.c.name.in_([name]))
            if chunks:
                conn.execute(media_chunks.insert(), chunks)
            conn.execute(media_objects.insert(), [row])

        await self._write(write)

    async def read(self, name: str) -> bytes | None:
        found = await self.open(name)
        if found is None:
            return None
        return b"".join([chunk async for chunk in found.chunks()])

    async def open(self, name: str) -> MediaFile | None:
        if not valid_name(name):
            return None
        query = sa.select(media_objects.c.blob_id, media_objects.c.size, media_objects.c.chunks)
        row = await self._read(
            lambda conn: conn.execute(query.where(media_objects.c.name == name)).first()
        )
        if row is None:
            return None
        blob_id, size, count = row.blob_id, int(row.size), int(row.chunks)
        one = sa.select(media_chunks.c.data).where(
            media_chunks.c.blob_id == blob_id, media_chunks.c.position == sa.bindparam("i")
        )

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(count):
                data = await self._read(lambda conn, i=i: conn.execute(one, {"i": i}).scalar())
                if data is None:  # replaced or deleted while being read: the rest is gone
                    return
                yield bytes(data)

        return MediaFile(name, size, blob_id, chunks)

    async def delete(self, names: Sequence[str]) -> int:
        if not names:
            return 0
        return int(
            await self._write(lambda conn: _delete_where(conn, media_objects.c.name.in_(names)))
        )

    async def delete_owned(self, workflow_ids: Sequence[str]) -> int:
        if not workflow_ids:
            return 0
        where = media_objects.c.workflow_id.in_(list(workflow_ids))
        return int(await self._write(lambda conn: _delete_where(conn, where)))

    async def count_owned(self, workflow_ids: Sequence[str]) -> int:
        if not workflow_ids:
            return 0
        query = sa.select(sa.func.count()).where(media_objects.c.workflow_id.in_(workflow_ids))
        return int(await self._read(lambda conn: conn.execute(query).scalar() or 0))

    async def close(self) -> None:
        if self._owns_store and self._store is not None:
            await self._store.close()
            self._store = None


def _delete_where(conn: sa.Connection, where: Any) -> int:
    """Delete the objects matching `where` and their chunks; how many objects there were."""
    blobs = sa.select(media_objects.c.blob_id).where(where)
    conn.execute(media_chunks.delete().where(media_chunks.c.blob_id.in_(blobs)))
    return int(conn.execute(media_objects.delete().where(where)).rowcount or 0)
