"""Item 4: argon2 off the event loop, logins throttled per account and per address, an unknown
email costs a hash like a known one, and register's 409 does not repeat the address."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from tests.support import make_settings, running_gateway

PASSWORD = "correct horse 42"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        workers={"embedded": False},
        auth={"login_attempts_per_account": 3, "login_attempts_per_address": 8},
    )
    async with (
        running_gateway(settings) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        yield client


async def register(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "first_name": "A", "last_name": "B"},
    )


async def login(http: httpx.AsyncClient, email: str, password: str = "wrong pass 1") -> Any:
    return await http.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_hashing_runs_off_the_event_loop_and_for_unknown_emails_too(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread()
    threads: list[threading.Thread] = []
    real_verify, real_hash = PasswordHasher.verify, PasswordHasher.hash

    def verify(self: PasswordHasher, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real_verify(self, *args, **kwargs)

    def hash_(self: PasswordHasher, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real_hash(self, *args, **kwargs)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    monkeypatch.setattr(PasswordHasher, "hash", hash_)
    assert (await register(http, "known@example.com")).status_code == 201
    assert (await login(http, "known@example.com", PASSWORD)).status_code == 200
    assert len(threads) == 2
    assert (await login(http, "nobody@example.com")).status_code == 401
    assert len(threads) == 3, "an unknown email must cost one verification, like a known one"
    assert loop_thread not in threads


async def test_logins_are_throttled_per_account(http: httpx.AsyncClient) -> None:
    assert (await register(http, "victim@example.com")).status_code == 201
    for _ in range(3):
        assert (await login(http, "victim@example.com")).status_code == 401
    refused = await login(http, "Victim@example.com")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert (await login(http, "other@example.com")).status_code == 401


async def test_logins_are_throttled_per_address(http: httpx.AsyncClient) -> None:
    answers = []
    for i in range(16):  # eight at once, then about one more every 7.5 s
        answers.append((await login(http, f"u{i}@example.com")).status_code)
        if answers[-1] == 429:
            break
    assert answers[:8] == [401] * 8
    assert answers[-1] == 429, answers


async def test_register_409_does_not_repeat_the_address(http: httpx.AsyncClient) -> None:
    assert (await register(http, "taken@example.com")).status_code == 201
    again = await register(http, "taken@example.com")
    assert again.status_code == 409
    assert "taken@example.com" not in again.text
