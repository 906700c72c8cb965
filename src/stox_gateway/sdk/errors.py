"""Control flow for handlers.

StepError
├── Retry          the step failed but may succeed on another attempt (the default for
│                  any other exception, too)
└── NonRetryable   the input is wrong; another attempt would fail the same way
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
