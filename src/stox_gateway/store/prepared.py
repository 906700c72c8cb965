"""The hot statements on SQLite's DBAPI cursor, with SQLAlchemy's own SQL and conversions.

`Connection.execute` spends ~35 µs of Python on a statement before SQLite sees it (its cache
key, an execution context, parameters through several layers): on a step's commit, seven
statements, more than the work they do, and a fifth of the gateway's time at load. Here a
statement is compiled once per dialect and set of columns, the bind processor of each column is
looked up once (the very ones `Connection.execute` applies: UTC datetimes, JSON with the
engine's serializer), and rows go to `cursor.executemany` as tuples. What is stored is what
`Connection.execute` stores (`tests/integration/test_prepared_statements.py` compares them).
The engine's two reads (a batch's workflows and their steps) go the same way back: rows come
through each column's result processor, as dictionaries.
Errors are wrapped as SQLAlchemy's (`IntegrityError`, `OperationalError`, …), so callers
cannot tell the paths apart. What is left out: `echo` logging and execute events (none here).

SQLite only (`sqlite.py` runs `statements.py` through it). On PostgreSQL a statement costs a
round trip; the Python around it is not what matters there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Row = Mapping[str, Any]
_Plan = tuple[str, tuple[tuple[str, Callable[[Any], Any] | None], ...]]


class Prepared:
    """One INSERT or UPDATE, run with many rows at once (`executemany`)."""

    def __init__(self, statement: UpdateBase) -> None:
        self._statement = statement
        self._plans: dict[tuple[str, ...], _Plan] = {}  # by the rows' keys

    def executemany(self, conn: sa.Connection, rows: Sequence[Row]) -> Any:
        """Run for `rows` (all with the keys of the first) on `conn`'s transaction; returns
        the DBAPI cursor, or None when there were no rows (no statement)."""
        if not rows:
            return None
        dialect = conn.dialect
        sql, columns = self._plan(dialect, tuple(rows[0]))
        params = [
            tuple(convert(row[key]) if convert else row[key] for key, convert in columns)
            for row in rows
        ]
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, params)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        return cursor

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        plan = self._plans.get(keys)
        if plan is None:
            compiled = self._statement.compile(dialect=dialect, column_keys=list(keys))
            assert compiled.positiontup is not None, "a positional paramstyle (qmark)"
            columns = []
            for name in compiled.positiontup:
                bind = compiled.binds[name]
                convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
                columns.append((bind.key, convert))
            plan = self._plans[keys] = (compiled.string, tuple(columns))
        return plan


class PreparedSelect:
    """A SELECT by one parameter, `param`: a value, or with `expanding` a list (`IN`)."""

    def __init__(self, statement: Select[Any], param: str, *, expanding: bool = False) -> None:
        self._statement = statement
        self._param, self._expanding = param, expanding
        self._columns: tuple[tuple[str, Callable[[Any], Any] | None], ...] | None = None
        self._sql: dict[int, str] = {}  # values in the IN list → SQL

    def all(self, conn: sa.Connection, value: Any) -> list[dict[str, Any]]:
        dialect = conn.dialect
        values = tuple(value) if self._expanding else (value,)
        sql, columns = self._plan(dialect, len(values))
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            found = cursor.execute(sql, values).fetchall()
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                sql, values, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        return [
            {
                name: convert(v) if convert else v
                for (name, convert), v in zip(columns, row, strict=True)
            }
            for row in found
        ]

    def _plan(self, dialect: Dialect, count: int) -> tuple[str, Any]:
        columns = self._columns
        if columns is None:
            columns = self._columns = tuple(
                (str(c.key), c.type.dialect_impl(dialect).result_processor(dialect, None))
                for c in self._statement.selected_columns
            )
        sql = self._sql.get(count)
        if sql is None:
            compiled = self._statement.compile(dialect=dialect)
            value: Any = [f"v{i}" for i in range(count)] if self._expanding else "v"
            sql = compiled.construct_expanded_state({self._param: value}).statement
            if len(self._sql) < 1024:  # IN lists of up to a batch's size: a few hundred
                self._sql[count] = sql
        return sql, columns


def last_insert_rowid(cursor: Any) -> int:
    """The rowid of the last row the cursor's connection inserted (SQLite)."""
    return int(cursor.execute("SELECT last_insert_rowid()").fetchone()[0])
