"""The auth service's rules, independent of gRPC: register, login, validate, refresh, profile."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from email_validator import EmailNotValidError, validate_email

from stox_gateway.auth.errors import InvalidArgument, NotFound, Unauthenticated
from stox_gateway.auth.repository import AuthRepository, RefreshToken, User
from stox_gateway.auth.tokens import AccessClaims, TokenIssuer
from stox_gateway.config.settings import AuthSettings

_T = TypeVar("_T")

MIN_PASSWORD = 8
MAX_PASSWORD = 128
# argon2 is CPU and memory by design: at most this many hashes at once, off the event loop,
# so a flood of logins queues here instead of stalling every other request.
HASH_THREADS = 2


def password_problems(password: str) -> list[str]:
    """Why a password is too weak, in words a person can act on (empty: strong enough)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        problems.append(f"at most {MAX_PASSWORD} characters")
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append("both letters and digits")
    return problems


def normalize_email(email: str) -> str:
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidArgument(f"email: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int


class AuthService:
    def __init__(self, repository: AuthRepository, settings: AuthSettings) -> None:
        self._repository = repository
        self._tokens = TokenIssuer(settings)
        self._refresh_ttl = settings.refresh_token_ttl
        # argon2id with the library's (OWASP-aligned) defaults.
        self._hasher = PasswordHasher()
        self._hash_pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="argon2")
        # Verified for an unknown email, so that answer takes as long as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    @property
    def tokens(self) -> TokenIssuer:
        return self._tokens

    async def register(self, email: str, password: str, first_name: str, last_name: str) -> Session:
        email = normalize_email(email)
        problems = password_problems(password)
        if problems:
            raise InvalidArgument("password: needs " + ", ".join(problems))
        if not first_name.strip() or not last_name.strip():
            raise InvalidArgument("first_name and last_name are required")
        now = datetime.now(UTC)
        user = User(
            id=str(uuid.uuid4()),
            email=email,
            password_hash=await self._in_pool(self._hasher.hash, password),
            first_name=first_name.strip(),
            last_name=last_name.strip(),
            created_at=now,
        )
        async with self._repository.transaction() as conn:
            await self._repository.add_user(conn, user)
            refresh = await self._new_refresh_token(conn, user, str(uuid.uuid4()), now)
        return self._session(user, refresh, now)

    async def login(self, email: str, password: str) -> Session:
        user = await self._repository.user_by_email(email.strip().lower())
        stored = user.password_hash if user is not None else self._dummy_hash
        matches = await self._in_pool(self._password_matches, stored, password)
        if user is None or not matches:
            raise Unauthenticated("wrong email or password")
        now = datetime.now(UTC)
        async with self._repository.transaction() as conn:
            refresh = await self._new_refresh_token(conn, user, str(uuid.uuid4()), now)
        return self._session(user, refresh, now)

    def validate(self, token: str) -> AccessClaims:
        return self._tokens.verify(token)

    async def refresh(self, refresh_token: str) -> Session:
        """Spend a refresh token for a new pair. A spent one used again revokes its family:
        whoever stole it and whoever holds its successor both have to log in again."""
        now = datetime.now(UTC)
        token_hash = _hash(refresh_token)
        user: User | None = None
        fresh = ""
        async with self._repository.transaction() as conn:
            stored = await self._repository.refresh_token_for_update(conn, token_hash)
            if stored is None or stored.revoked_at is not None:
                raise Unauthenticated("refresh token not recognised")
            if stored.used_at is not None:
                await self._repository.revoke_family(conn, stored.family_id, now)
                reuse = True
            else:
                reuse = False
                if stored.expires_at <= now:
                    raise Unauthenticated("refresh token expired")
                await self._repository.mark_used(conn, token_hash, now)
                user = await self._repository.user_by_id(stored.user_id)
                if user is None:
                    raise Unauthenticated("user no longer exists")
                fresh = await self._new_refresh_token(conn, user, stored.family_id, now)
        if reuse:  # after the commit, so the revocation sticks
            raise Unauthenticated("refresh token reused: every session of this login is revoked")
        assert user is not None  # set on the non-reuse path above
        return self._session(user, fresh, now)

    async def profile(self, access_token: str) -> User:
        claims = self._tokens.verify(access_token)
        user = await self._repository.user_by_id(claims.user_id)
        if user is None:
            raise NotFound("user not found")
        return user

    def close(self) -> None:
        self._hash_pool.shutdown(wait=False, cancel_futures=True)

    async def _in_pool(self, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._hash_pool, function, *args)

    def _password_matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _new_refresh_token(
        self, conn: object, user: User, family_id: str, now: datetime
    ) -> str:
        token = secrets.token_urlsafe(32)
        record = RefreshToken(
            token_hash=_hash(token),
            user_id=user.id,
            family_id=family_id,
            expires_at=now + self._refresh_ttl,
            used_at=None,
            revoked_at=None,
        )
        await self._repository.add_refresh_token(conn, record, now)  # type: ignore[arg-type]
        return token

    def _session(self, user: User, refresh_token: str, now: datetime) -> Session:
        return Session(
            user=user,
            access_token=self._tokens.issue(user.id, user.email, now),
            refresh_token=refresh_token,
            expires_in=int(self._tokens.ttl.total_seconds()),
        )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
