"""SQLite: an idle store commits on the event loop's thread, never waiting for a lock there.

What must hold (`store/sqlite_thread.py`, `INLINE_WHILE_BUSY_BELOW` in `store/sqlite.py`): a lone
write needs no hand-off to SQLite's thread; when another connection holds the write lock it
waits on that thread instead, so the event loop keeps running; what the inline commits wrote
reaches the database file (the thread checkpoints the WAL for them), not only the WAL; and
under load (many changes at once) writes go to the thread until the store is quiet again.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from stox_gateway.store import sqlite_thread
from stox_gateway.store.sql import SqlStore
from tests.integration.test_store_group_commit import creation


@pytest.fixture
async def store(tmp_path: Path):
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def thread_of_writes(store: SqlStore) -> list[str]:
    """Record the thread each write batch's SQL runs on."""
    names: list[str] = []
    apply = store._apply

    def recording(conn, ops):  # type: ignore[no-untyped-def]
        names.append(threading.current_thread().name)
        return apply(conn, ops)

    store._apply = recording  # type: ignore[method-assign]
    return names


async def test_a_lone_write_commits_on_the_callers_thread(store: SqlStore, tmp_path: Path) -> None:
    names = thread_of_writes(store)
    transition = creation()
    assert await store.create(transition) == transition.workflow.id
    assert names == [threading.current_thread().name]
    # Durable: another connection (another process, say) reads it.
    with sqlite3.connect(tmp_path / "inline.db") as other:
        rows = other.execute("SELECT id FROM workflows").fetchall()
    assert rows == [(transition.workflow.id,)]


async def test_a_locked_database_is_waited_for_on_the_thread_not_the_loop(
    store: SqlStore, tmp_path: Path
) -> None:
    names = thread_of_writes(store)
    holder = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    transition = creation()
    writing = asyncio.ensure_future(store.create(transition))
    ticks = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.3:  # the loop keeps turning meanwhile
        await asyncio.sleep(0.01)
        ticks += 1
    assert not writing.done()
    holder.execute("COMMIT")
    holder.close()
    assert await asyncio.wait_for(writing, 10) == transition.workflow.id
    assert ticks >= 10
    # Refused at once inline (at BEGIN IMMEDIATE, before any statement), then run on the thread.
    assert len(names) == 1 and names[0].startswith("stox-sqlite")
    assert (await store.get(transition.workflow.id)) is not None


async def test_inline_commits_reach_the_database_file(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_thread, "CHECKPOINT_EVERY", 5)
    transitions = [creation(name=f"P{i}") for i in range(5)]
    for transition in transitions:  # one at a time: five inline commits
        await store.create(transition)
    thread = store._sqlite
    assert thread is not None and thread._checkpointing is not None
    await asyncio.wait_for(thread._checkpointing, 10)
    # The main file alone, without its WAL, has them.
    copy = tmp_path / "copy.db"
    shutil.copy(tmp_path / "inline.db", copy)
    with sqlite3.connect(copy) as alone:
        stored = {row[0] for row in alone.execute("SELECT id FROM workflows")}
    assert stored == {t.workflow.id for t in transitions}


async def test_a_large_batch_goes_to_the_thread(store: SqlStore) -> None:
    names = thread_of_writes(store)
    transitions = [creation(name=f"P{i}") for i in range(40)]
    await asyncio.gather(*(store.create(t) for t in transitions))
    # Queued in one turn of the loop: one batch of many changes, on the thread.
    assert len(names) == 1 and names[0].startswith("stox-sqlite")
    assert len(await store.list_workflows(limit=100)) == 40


async def test_after_a_crowd_lone_writes_stay_on_the_thread_for_a_while(store: SqlStore) -> None:
    """Under load the thread lets SQLite's own work overlap the loop's: inline is for an idle
    store only, so a lone write right after a crowded batch still goes to the thread."""
    names = thread_of_writes(store)
    await asyncio.gather(*(store.create(creation(name=f"P{i}")) for i in range(20)))  # a crowd
    for i in range(10):  # then one at a time
        await store.create(creation(name=f"Q{i}"))
    on_thread = [name.startswith("stox-sqlite") for name in names]
    assert on_thread[:2] == [True, True]  # the crowd, and the first lone write after it
    assert not on_thread[-1]  # quiet long enough: inline again
    assert on_thread == sorted(on_thread, reverse=True)  # once inline, inline while quiet
