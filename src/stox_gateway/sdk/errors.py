"""Control flow for handlers.

StepError
├── Retry          the step failed but may succeed on another attempt (the default for
│                  any other exception, too)
└── NonRetryable   the input is wrong; another attempt would fail the same way

and what a worker's reporter raises: `GatewayUnavailable` (try the report again later) and
`ReportRefused` (the worker's credentials were refused).
"""


class StepError(Exception):
    """A handler's way to fail a step with a message meant for people; `detail` is the
    technical text (an exception, a status line) shown folded away under it."""

    retryable = True

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class Retry(StepError):
    """Fail this attempt; the gateway retries with backoff while attempts remain."""


class NonRetryable(StepError):
    """Fail the step for good: the gateway fails the workflow without another attempt."""

    retryable = False


class GatewayUnavailable(Exception):
    """The report was not delivered because the gateway (or its database, or the broker) is
    away for now; the same report sent later may well be accepted."""


class ReportRefused(Exception):
    """The gateway refused the worker's credentials (wrong or missing service token): no
    report of this worker will be taken until its configuration is fixed."""
