"""Bulk retry/cancel (`facade.bulk_act`): at most `max_items` per request, said as `limited`,
acted on `batch_size` at a time, each workflow's own refusal counted as skipped."""

from __future__ import annotations

import asyncio
from typing import Any

from stox_gateway.engine.errors import CompletionRejected, WorkflowNotFound
from stox_gateway.facade import bulk_act
from stox_gateway.store.port import WorkflowQuery


class Engine:
    def __init__(self, ids: list[str], refuse: set[str], gone: set[str]) -> None:
        self.ids, self.refuse, self.gone = ids, refuse, gone
        self.acted: list[str] = []
        self.in_flight = self.most_in_flight = 0

    async def find_ids(self, query: WorkflowQuery, *, limit: int) -> list[str]:
        return self.ids[:limit]

    async def retry(self, workflow_id: str) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        if workflow_id in self.refuse:
            raise CompletionRejected(f"{workflow_id} has not failed")
        if workflow_id in self.gone:
            raise WorkflowNotFound(workflow_id)
        self.acted.append(workflow_id)

    cancel = retry


async def test_a_bulk_action_stops_at_its_maximum_and_says_so() -> None:
    ids = [f"wf-{i:02}" for i in range(25)]
    engine = Engine(ids, refuse={"wf-03", "wf-04"}, gone={"wf-05"})
    outcome = await bulk_act(
        engine,  # type: ignore[arg-type]
        "retry",
        WorkflowQuery(),
        batch_size=10,
        max_items=20,
    )
    assert outcome.to_wire() == {
        "retried": 17,
        "skipped": 2,
        "not_found": 1,
        "matched": 20,
        "limited": True,
    }
    assert sorted(engine.acted) == sorted(set(ids[:20]) - {"wf-03", "wf-04", "wf-05"})
    assert 1 < engine.most_in_flight <= 10  # a batch at a time, its workflows together


async def test_exactly_the_maximum_is_not_limited() -> None:
    engine = Engine([f"wf-{i}" for i in range(5)], refuse=set(), gone=set())
    outcome = await bulk_act(
        engine,  # type: ignore[arg-type]
        "cancel",
        WorkflowQuery(),
        batch_size=2,
        max_items=5,
    )
    assert (outcome.done, outcome.matched, outcome.limited) == (5, 5, False)
    assert engine.most_in_flight == 2
