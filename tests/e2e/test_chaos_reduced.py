"""The chaos suite in its reduced form: every fault scenario once, with few workflows.

Real processes (gateways, services, a rogue consumer) on RabbitMQ and PostgreSQL, with faults
injected while workflows run: SIGKILLs, crash points, broker and database restarts, closed
connections, poison products, malformed messages, duplicate and reordered completions. The
definitions of every count are in chaos/README.md; the full run is `python -m chaos.run`.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from chaos import servers
from chaos.run import run_suite
from chaos.scenarios import SCENARIOS

from tests.support import require_server

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "restarts_servers",
    [
        pytest.param(False, id="process-faults"),
        # A broker or database restart disturbs every test running beside it: `make test` runs
        # the `serial` tests after the others, alone.
        pytest.param(True, id="server-restarts", marks=pytest.mark.serial),
    ],
)
def test_no_fault_loses_a_workflow_or_applies_anything_twice(
    tmp_path: Path, restarts_servers: bool
) -> None:
    names = [s.name for s in SCENARIOS if s.restarts_servers is restarts_servers]
    require_server(5672, "RabbitMQ")
    require_server(5432, "PostgreSQL")
    table = tmp_path / "chaos-reduced.md"
    # Logs and journals outside pytest's temporary folders (which are pruned): kept when the
    # test fails, as the evidence of a failing row; removed when it passes.
    workdir = Path(tempfile.mkdtemp(prefix="chaos-reduced-"))
    rows = asyncio.run(run_suite(reduced=True, scenarios=names, workdir=workdir, results=[table]))

    assert servers.port_open(5672), "RabbitMQ is not running after the suite"
    assert servers.port_open(5432), "PostgreSQL is not running after the suite"
    failures = []
    for row in rows:
        counts = {
            "lost": row.lost,
            "duplicated state changes": row.dup_state,
            "duplicated effects": row.dup_effects,
            "stuck": row.stuck,
            "failed unexpectedly": row.failed_unexpected,
        }
        broken = {name: n for name, n in counts.items() if n}
        if broken or row.problems or row.accepted == 0:
            failures.append(f"{row.scenario}: {broken} accepted={row.accepted} {row.problems}")
    assert not failures, "\n".join(failures) + "\n\n" + table.read_text()
    shutil.rmtree(workdir, ignore_errors=True)
