"""Login and register attempts per account and per client address, answered `429` past the
limit: password guessing gets slow, and a flood cannot keep the argon2 threads busy."""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from stox_gateway.api.errors import error_response
from stox_gateway.api.rate_limit import TokenBuckets
from stox_gateway.config.settings import AuthSettings


class LoginThrottle:
    def __init__(self, settings: AuthSettings) -> None:
        per_account, per_address = (
            settings.login_attempts_per_account,
            settings.login_attempts_per_address,
        )
        self._accounts = TokenBuckets(per_account / 60, per_account)
        self._addresses = TokenBuckets(per_address / 60, per_address)

    def refuse(self, request: Request, account: str | None) -> Response | None:
        """A `429` with `Retry-After` when this attempt is one too many, else None."""
        address = request.client.host if request.client else "unknown"
        wait = self._addresses.take(address)
        if wait == 0 and account is not None:
            wait = self._accounts.take(account.strip().lower())
        if wait == 0:
            return None
        return error_response(
            429,
            "too_many_requests",
            "too many attempts; try again later",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
