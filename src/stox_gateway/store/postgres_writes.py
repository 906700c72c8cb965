"""PostgreSQL: a batch's writes in one statement, so a step's commit is one round trip of
writes instead of six.

Each table's rows go as one array parameter per column (`unnest`), every insert and update
is a data-modifying `WITH` part of one statement, and the outbox insert, last, returns the
new rows' ids. The parts cannot see each other's rows, so a workflow (or step) created and
changed in the same batch is written once, in its last state (`Writes.fold`); foreign keys
are checked at the end of the statement, when every part has run. Values are converted as
SQLAlchemy's bind processors would (UTC datetimes, JSON with the gateway's serializer, Python
None in a JSON column as JSON `null`), and the SQL of each shape of batch is built once and
prepared once per connection by asyncpg.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from stox_gateway import codec
from stox_gateway.store.planning import Writes, mark_sent
from stox_gateway.store.rows import STEP_CHANGED, WORKFLOW_CHANGED
from stox_gateway.store.tables import (
    UTCDateTime,
    idempotency_keys,
    outbox,
    steps,
    workflow_events,
    workflows,
)

_DIALECT: sa.Dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_ARRAY_TYPES = {
    sa.String: "text[]",
    sa.Integer: "int8[]",
    sa.Float: "float8[]",
    sa.Boolean: "bool[]",
    sa.LargeBinary: "bytea[]",
}
Convert = Callable[[Any], Any]


def _column(table: sa.Table, name: str) -> tuple[str, str, Convert | None]:
    """(array type of the parameter, SQL of one element, conversion of a Python value)."""
    kind = table.c[name].type
    if isinstance(kind, UTCDateTime):
        return "timestamptz[]", f'"{name}"', _utc
    if isinstance(kind.dialect_impl(_DIALECT), sa.JSON):
        return "text[]", f'"{name}"::jsonb', codec.dumps_str
    for base, array in _ARRAY_TYPES.items():
        if isinstance(kind, base):
            return array, f'"{name}"', None
    raise TypeError(f"{table.name}.{name}: no array type for {kind!r}")


def _utc(value: Any) -> Any:
    return UTCDateTime().process_bind_param(value, _DIALECT)


class _Part:
    """One table's rows as array parameters: `unnest($1::t1[], …) AS u(c1, …)`."""

    def __init__(self, table: sa.Table, names: Sequence[str]) -> None:
        self.table, self.names = table, tuple(names)
        self.columns = [_column(table, n) for n in names]

    def unnest(self, first: int) -> str:
        arrays = ", ".join(f"${first + i}::{c[0]}" for i, c in enumerate(self.columns))
        names = ", ".join(f'"{n}"' for n in self.names)
        return f"unnest({arrays}) AS u({names})"

    def params(self, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        return [
            [convert(row[name]) for row in rows] if convert else [row[name] for row in rows]
            for name, (_, _, convert) in zip(self.names, self.columns, strict=True)
        ]

    def insert(self, first: int, returning: str = "") -> str:
        names = ", ".join(f'"{n}"' for n in self.names)
        selected = ", ".join(f"u.{c[1]}" for c in self.columns)
        return (
            f'INSERT INTO "{self.table.name}" ({names}) '
            f"SELECT {selected} FROM {self.unnest(first)}{returning}"
        )

    def update(self, first: int) -> str:
        sets = ", ".join(
            f'"{n}" = u.{c[1]}' for n, c in zip(self.names, self.columns, strict=True) if n != "id"
        )
        return (
            f'UPDATE "{self.table.name}" AS t SET {sets} '
            f"FROM {self.unnest(first)} WHERE t.id = u.id"
        )


_STATEMENTS: dict[tuple[Any, ...], tuple[str, list[tuple[_Part, str]]]] = {}


def _shape(writes: Writes) -> tuple[Any, ...]:
    def keys(rows: Sequence[dict[str, Any]]) -> tuple[str, ...] | None:
        return tuple(rows[0]) if rows else None

    return (
        keys(writes.new_workflows),
        keys(writes.new_steps),
        keys(writes.keys),
        bool(writes.changed_workflows),
        bool(writes.changed_steps),
        keys(writes.events),
        keys(writes.messages),
    )


def _statement(shape: tuple[Any, ...]) -> tuple[str, list[tuple[_Part, str]]]:
    """The SQL for a shape of batch, and its parts in parameter order with what they take."""
    found = _STATEMENTS.get(shape)
    if found is not None:
        return found
    new_workflows, new_steps, keys, changed_workflows, changed_steps, events, messages = shape
    plan: list[tuple[_Part, str, str]] = []  # part, its rows' attribute, insert or update
    if new_workflows:
        plan.append((_Part(workflows, new_workflows), "new_workflows", "insert"))
    if new_steps:
        plan.append((_Part(steps, new_steps), "new_steps", "insert"))
    if keys:
        plan.append((_Part(idempotency_keys, keys), "keys", "insert"))
    if changed_workflows:
        plan.append((_Part(workflows, ("id", *WORKFLOW_CHANGED)), "changed_workflows", "update"))
    if changed_steps:
        plan.append((_Part(steps, ("id", *STEP_CHANGED)), "changed_steps", "update"))
    if events:
        plan.append((_Part(workflow_events, events), "events", "insert"))
    parts, first = [], 1
    for part, _, how in plan:
        parts.append(part.insert(first) if how == "insert" else part.update(first))
        first += len(part.names)
    if messages:
        last = _Part(outbox, messages)
        main = last.insert(first, " RETURNING id, message_id")
        plan.append((last, "messages", "insert"))
    else:
        main = "SELECT NULL, NULL WHERE false"
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts))
    sql = f"WITH {ctes} {main}" if ctes else main
    found = _STATEMENTS[shape] = (sql, [(part, attribute) for part, attribute, _ in plan])
    return found


def execute(conn: sa.Connection, writes: Writes) -> None:
    """All of `writes` in one statement; `writes.outbox_ids` get the new rows' ids."""
    writes.fold()
    if writes.sent:
        mark_sent(
            conn,
            [row_id for mark in writes.sent for row_id in mark.ids],
            max(mark.sent_at for mark in writes.sent),
        )
    sql, parts = _statement(_shape(writes))
    params: list[Any] = []
    for part, attribute in parts:
        rows = getattr(writes, attribute)
        params.extend(part.params(list(rows.values()) if isinstance(rows, dict) else rows))
    if not params:
        return
    returned = conn.exec_driver_sql(sql, tuple(params)).all()
    if writes.messages:
        by_message = {message_id: row_id for row_id, message_id in returned}
        writes.outbox_ids = [by_message[row["message_id"]] for row in writes.messages]
