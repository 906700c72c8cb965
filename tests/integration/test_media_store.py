"""One contract for the media store: the local folder, and the database on SQLite and
PostgreSQL (reusing the store contract's `any_store`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stox_gateway.media.database import DatabaseMediaStore
from stox_gateway.media.local import LocalMediaStore
from stox_gateway.media.port import MediaStore
from stox_gateway.store.sql import SqlStore
from tests.integration.conftest import unique
from tests.support import POSTGRES_URL, require_server

CHUNK = 1024


@pytest.fixture(params=["local", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def media(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    if request.param == "local":
        yield LocalMediaStore(tmp_path / "media")
        return
    if request.param == "sqlite":
        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    else:  # a schema of its own, dropped afterwards, as `any_store` does
        require_server(5432, "PostgreSQL")
        store = SqlStore(POSTGRES_URL, schema=unique("stox_test"))
    await store.start()
    try:
        yield DatabaseMediaStore(store, chunk_bytes=CHUNK)
    finally:
        await store.close()
        if store.schema:
            engine = create_async_engine(POSTGRES_URL)
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE'))
            await engine.dispose()


async def streamed(media: MediaStore, name: str) -> tuple[bytes, int] | None:
    found = await media.open(name)
    if found is None:
        return None
    parts = [chunk async for chunk in found.chunks()]
    return b"".join(parts), found.size


async def test_a_file_is_written_read_and_streamed_whole(media: MediaStore) -> None:
    data = bytes(range(256)) * 12 + b"tail"  # 3,076 bytes: four chunks in the database
    await media.put("thumbnails/wf_0_abc.jpg", data, owner="wf")
    assert await media.read("thumbnails/wf_0_abc.jpg") == data
    assert await streamed(media, "thumbnails/wf_0_abc.jpg") == (data, len(data))
    assert await media.read("thumbnails/missing.jpg") is None
    assert await media.open("missing.jpg") is None


async def test_a_rewrite_replaces_the_file_and_its_etag(media: MediaStore) -> None:
    await media.put("photo-0123456789ab.jpg", b"first" * 500)
    before = await media.open("photo-0123456789ab.jpg")
    await media.put("photo-0123456789ab.jpg", b"second")
    after = await media.open("photo-0123456789ab.jpg")
    assert before is not None and after is not None
    assert after.etag != before.etag
    assert await media.read("photo-0123456789ab.jpg") == b"second"
    assert after.size == 6


async def test_names_that_could_leave_the_store_are_refused(media: MediaStore) -> None:
    bad = ("", "../x.jpg", "a/../../x.jpg", ".hidden.jpg", "a//b.jpg", "a\\b.jpg", "x\x00.jpg")
    for name in bad:
        with pytest.raises(ValueError, match="invalid media name"):
            await media.put(name, b"x")
        assert await media.open(name) is None, name
        assert await media.read(name) is None, name


async def test_files_are_deleted_by_name_and_by_owner(media: MediaStore) -> None:
    for name, owner in (
        ("thumbnails/wf1_0_a.jpg", "wf1"),
        ("thumbnails/wf1_1_b.jpg", "wf1"),
        ("thumbnails/wf2_0_c.jpg", "wf2"),
        ("upload-0123456789ab.jpg", None),
    ):
        await media.put(name, b"x" * 2000, owner=owner)
    assert await media.count_owned(["wf1", "nobody"]) == 2
    assert await media.delete_owned(["wf1"]) == 2
    assert await media.read("thumbnails/wf1_0_a.jpg") is None
    assert await media.read("thumbnails/wf2_0_c.jpg") is not None
    assert await media.delete(["upload-0123456789ab.jpg", "never-there.jpg"]) == 1
    assert await media.read("upload-0123456789ab.jpg") is None
    assert await media.count_owned(["wf2"]) == 1
