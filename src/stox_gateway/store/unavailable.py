"""A database that is away, told from a bad statement: a lost or refused connection is
`Unavailable` (503, retry later), any other database error stays what it is (a bug: 500)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.exc import DBAPIError

from stox_gateway.engine.errors import Unavailable


def is_connection_error(exc: DBAPIError) -> bool:
    """A lost or refused connection (retry later: 503), not a bad statement (a bug: 500)."""
    if exc.connection_invalidated or isinstance(exc.orig, OSError):
        return True
    text = str(exc.orig).lower() if exc.orig else str(exc).lower()
    return any(
        needle in text
        for needle in (
            "connect",
            "connection",
            "server closed",
            "terminating",
            "refused",
            "shutting down",
            "starting up",
            "database is locked",
        )
    )


@contextlib.asynccontextmanager
async def unavailable_when_away() -> AsyncIterator[None]:
    """A lost connection is `Unavailable` (503); any other database error stays what it is."""
    try:
        yield
    except (OSError, DBAPIError) as exc:
        if isinstance(exc, DBAPIError) and not is_connection_error(exc):
            raise
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
