"""Hypothesis strategies shared by the property and stateful tests."""

from __future__ import annotations

from hypothesis import strategies as st

from stox_gateway.engine.definitions import StepDefinition, WorkflowDefinition


@st.composite
def dags(
    draw: st.DrawFn,
    *,
    name: str = "dag",
    max_steps: int = 7,
    timeout: float = 30.0,
    max_attempts: st.SearchStrategy[int] | None = None,
) -> WorkflowDefinition:
    """A random acyclic pipeline: a hidden ranking decides who may wait for whom, and the
    definition order is not the ranking (an `after` may name a later item)."""
    n = draw(st.integers(1, max_steps))
    names = [f"s{i}" for i in range(n)]
    rank = draw(st.permutations(range(n)))
    steps = []
    for i in range(n):
        earlier = [names[j] for j in range(n) if rank[j] < rank[i]]
        after = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        attempts = draw(st.integers(1, 3) if max_attempts is None else max_attempts)
        steps.append(StepDefinition(names[i], tuple(after), timeout, attempts))
    return WorkflowDefinition(name, tuple(steps))
