"""`GroupCommit.submit_later`: an operation that rides along with the next batch, or goes alone
after its delay; `settle` commits it now; `close` commits it before stopping."""

from __future__ import annotations

import asyncio

from stox_gateway.store.group_commit import GroupCommit, Op


class Recorder:
    """A `write_batch` that commits instantly and remembers each batch's operations."""

    def __init__(self) -> None:
        self.batches: list[list[Op]] = []

    async def __call__(self, ops: list[Op]) -> None:
        self.batches.append(list(ops))
        for op in ops:
            op.future.set_result(None)


async def test_a_later_op_rides_along_with_the_next_batch() -> None:
    recorder = Recorder()
    writer = GroupCommit(recorder, later_delay=10.0)
    mark, change = Op(), Op()
    done = writer.submit_later(mark)
    await asyncio.sleep(0.01)
    assert recorder.batches == []  # waits for company
    await writer.submit(change)
    assert recorder.batches == [[mark, change]]  # one transaction for both
    assert done.done()
    await writer.close()


async def test_a_later_op_goes_alone_after_its_delay() -> None:
    recorder = Recorder()
    writer = GroupCommit(recorder, later_delay=0.02)
    done = writer.submit_later(Op())
    await asyncio.wait_for(done, 1.0)
    assert len(recorder.batches) == 1
    await writer.close()


async def test_settle_commits_the_later_ops_now() -> None:
    recorder = Recorder()
    writer = GroupCommit(recorder, later_delay=10.0)
    done = writer.submit_later(Op())
    await asyncio.wait_for(writer.settle(), 1.0)
    assert done.done() and len(recorder.batches) == 1
    await writer.settle()  # nothing left: returns at once
    await writer.close()


async def test_close_commits_later_ops_before_stopping() -> None:
    recorder = Recorder()
    writer = GroupCommit(recorder, later_delay=10.0)
    done = writer.submit_later(Op())
    await asyncio.wait_for(writer.close(), 2.0)
    assert done.done() and done.exception() is None
    assert len(recorder.batches) == 1
