"""Users and refresh tokens in the configured database (the same tables on SQLite and PG)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stox_gateway.auth.errors import AlreadyExists
from stox_gateway.store.sql import adapter_for_backend
from stox_gateway.store.tables import refresh_tokens, users


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str
    first_name: str
    last_name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token_hash: str
    user_id: str
    family_id: str
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class AuthRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # A database with one writer (SQLite): queue this process's writers instead of
        # spinning on its lock. The adapter says which; no dialect test here.
        single = adapter_for_backend(engine.dialect.name).single_writer
        self._lock = asyncio.Lock() if single else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._lock or contextlib.nullcontext(), self._engine.connect() as conn:
            conn = await conn.execution_options(stox_write=True)
            async with conn.begin():
                yield conn

    async def add_user(self, conn: AsyncConnection, user: User) -> None:
        try:
            await conn.execute(users.insert().values(**_fields(user)))
        except IntegrityError as exc:
            # 409 as DESIGN §6 says, without repeating the address back.
            raise AlreadyExists("this email cannot be registered; log in instead") from exc

    async def user_by_email(self, email: str) -> User | None:
        return await self._user(users.c.email == email)

    async def user_by_id(self, user_id: str) -> User | None:
        return await self._user(users.c.id == user_id)

    async def _user(self, condition: Any) -> User | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(condition))).mappings().first()
        return User(**row) if row else None

    async def add_refresh_token(
        self, conn: AsyncConnection, token: RefreshToken, now: datetime
    ) -> None:
        await conn.execute(refresh_tokens.insert().values(**_fields(token), created_at=now))

    async def refresh_token_for_update(
        self, conn: AsyncConnection, token_hash: str
    ) -> RefreshToken | None:
        # SQLite renders no FOR UPDATE (its writer holds the whole database already).
        query = (
            sa.select(refresh_tokens)
            .where(refresh_tokens.c.token_hash == token_hash)
            .with_for_update()
        )
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return RefreshToken(**{k: v for k, v in row.items() if k != "created_at"})

    async def mark_used(self, conn: AsyncConnection, token_hash: str, now: datetime) -> None:
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.token_hash == token_hash)
            .values(used_at=now)
        )

    async def revoke_family(self, conn: AsyncConnection, family_id: str, now: datetime) -> None:
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
