"""DBOS Transact's process: three no-op steps as one durable workflow, its synchronous API.

    python -m bench.variants.dbos_proc   (env: BENCH_DBOS_URL, BENCH_DBOS_SCHEMA (PostgreSQL),
                                          BENCH_DBOS_PORT, BENCH_NOTIFY)

DBOS checkpoints every step and the workflow's outcome in its system database (SQLite or
PostgreSQL), in this one process: no broker, no HTTP. The harness connects to
127.0.0.1:BENCH_DBOS_PORT and writes one token per line; each starts a workflow
(`DBOS.start_workflow`, run on DBOS's executor threads, its defaults), and when the workflow's
outcome is recorded the notice goes to the harness (bench.notify).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from dbos import DBOS, DBOSConfig

from bench.notify import notify


@DBOS.step()
def step_one(token: str) -> str:
    return token


@DBOS.step()
def step_two(token: str) -> str:
    return token


@DBOS.step()
def step_three(token: str) -> str:
    return token


@DBOS.workflow()
def three_steps(token: str) -> str:
    return step_three(step_two(step_one(token)))


def main() -> None:
    config: DBOSConfig = {
        "name": "stox-bench",
        "system_database_url": os.environ["BENCH_DBOS_URL"],
        "run_admin_server": False,  # port 3001 would collide with any other DBOS here
    }
    if os.environ.get("BENCH_DBOS_SCHEMA"):
        config["dbos_system_schema"] = os.environ["BENCH_DBOS_SCHEMA"]
    DBOS(config=config)
    DBOS.launch()
    server = socket.create_server(("127.0.0.1", int(os.environ["BENCH_DBOS_PORT"])))
    connection, _ = server.accept()
    with connection, connection.makefile("rb") as lines:
        for line in lines:
            token = line.decode().strip()
            handle: Any = DBOS.start_workflow(three_steps, token)
            # After the outcome is recorded (the future resolves once DBOS wrote it).
            handle.future.add_done_callback(lambda _done, token=token: notify(token))
    DBOS.destroy()


if __name__ == "__main__":
    main()
