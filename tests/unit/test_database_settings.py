"""`database.*` connection settings: sensible defaults, clear refusals, and what reaches the
PostgreSQL engine (pool, timeouts as startup parameters, statement cache)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from stox_gateway.config.settings import DatabaseSettings, Settings
from stox_gateway.store.postgres import PostgresStore
from stox_gateway.store.sql import SqlStore


def test_defaults_bound_the_connections_of_a_process() -> None:
    db = Settings().database
    assert (db.pool_size, db.max_overflow) == (5, 5)
    assert db.pool_timeout == timedelta(seconds=10)
    assert db.statement_timeout == db.idle_in_transaction_timeout == timedelta(seconds=30)
    assert db.prepared_statements is True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"max_overflow": -1}, "max_overflow"),
        ({"pool_timeout": "0s"}, "pool_timeout"),
        ({"statement_timeout": "100us"}, "statement_timeout"),
        ({"idle_in_transaction_timeout": "soon"}, "idle_in_transaction_timeout"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DatabaseSettings(**changes)
    assert [error["loc"][0] for error in caught.value.errors()] == [field]


def _engine_options(**settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    options = DatabaseSettings(
        url="postgresql+asyncpg://u@h/db", schema_name="s", **settings
    ).store_options()
    store = SqlStore("postgresql+asyncpg://u@h/db", **options)
    assert isinstance(store, PostgresStore)
    return store._engine_options(), store._relay_options()


def test_the_settings_reach_both_pools_as_startup_parameters() -> None:
    engine, relay = _engine_options(
        pool_size=3, max_overflow=1, pool_timeout="2s", statement_timeout="1.5s"
    )
    assert (engine["pool_size"], engine["max_overflow"], engine["pool_timeout"]) == (3, 1, 2.0)
    assert (relay["pool_size"], relay["max_overflow"]) == (2, 0)
    for options in (engine, relay):
        server = options["connect_args"]["server_settings"]
        assert server["statement_timeout"] == "1500"
        assert server["idle_in_transaction_session_timeout"] == "30000"
        assert server["search_path"] == "s"
        assert "statement_cache_size" not in options["connect_args"]
    assert relay["connect_args"]["server_settings"]["synchronous_commit"] == "off"


def test_zero_turns_a_timeout_off_and_pgbouncer_mode_drops_the_statement_cache() -> None:
    engine, _ = _engine_options(statement_timeout=0, prepared_statements=False)
    args = engine["connect_args"]
    assert "statement_timeout" not in args["server_settings"]
    assert args["statement_cache_size"] == args["prepared_statement_cache_size"] == 0
    first, second = args["prepared_statement_name_func"](), args["prepared_statement_name_func"]()
    assert first != second  # names never collide on a server connection another client used
