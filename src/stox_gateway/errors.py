"""One root for every error the gateway raises on purpose, and one table for how each leaves.

Each part keeps its own names (`engine/errors.py`, `auth/errors.py`, `bus/port.py`), derived
from the kinds below; the edges (HTTP handlers, gRPC servers, the WebSocket route) look the
error up in `ANSWERS` by its class, nearest ancestor first, and answer as the table says.

StoxError                 500  INTERNAL             1011  anything unexpected: a generic answer
├── Misconfigured                                       the configuration does not fit what
│                                                       exists (a broker's queues): at start, one
│                                                       line naming the setting, exit non-zero
├── InvalidInput          400  INVALID_ARGUMENT     4400
├── Unauthenticated       401  UNAUTHENTICATED      4401
├── Forbidden             403  PERMISSION_DENIED    4403
├── NotFound              404  NOT_FOUND            4404
├── Conflict              409  FAILED_PRECONDITION  4409  the request does not fit the state
│   └── AlreadyExists     409  ALREADY_EXISTS       4409
├── TooLarge              413  RESOURCE_EXHAUSTED   4413  a body, image or progress `partial`
├── Unprocessable         422  INVALID_ARGUMENT     4422  well-formed, but refused
├── RateLimited           429  RESOURCE_EXHAUSTED   4429
├── Unavailable           503  UNAVAILABLE          1013  the store or bus does not answer
│   └── MediaUnavailable  503  UNAVAILABLE          1013  the media folder or table
└── Timeout               504  DEADLINE_EXCEEDED    4504

The gRPC codes are names of `grpc.StatusCode`, so this module imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoxError(Exception):
    """Root of every error the gateway raises on purpose. `code` is the stable, machine-readable
    name clients see; an instance may carry its own (`code=`) where one class has several."""

    code = "internal"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class Misconfigured(StoxError):
    """Refused at start: the message names the setting to change."""

    code = "misconfigured"


class InvalidInput(StoxError):
    code = "invalid_argument"


class Unauthenticated(StoxError):
    code = "unauthenticated"


class Forbidden(StoxError):
    code = "forbidden"


class NotFound(StoxError):
    code = "not_found"


class Conflict(StoxError):
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already_exists"


class TooLarge(StoxError):
    code = "payload_too_large"


class Unprocessable(StoxError):
    code = "validation_error"


class RateLimited(StoxError):
    code = "too_many_requests"


class Unavailable(StoxError):
    code = "unavailable"


class MediaUnavailable(Unavailable):
    """The media store (folder or database) cannot be read or written now."""

    code = "media_unavailable"


class Timeout(StoxError):
    code = "deadline_exceeded"


@dataclass(frozen=True, slots=True)
class Answer:
    """How an error leaves: HTTP status, gRPC status code (by name), WebSocket close code."""

    http: int
    grpc: str
    websocket: int


ANSWERS: dict[type[StoxError], Answer] = {
    StoxError: Answer(500, "INTERNAL", 1011),
    InvalidInput: Answer(400, "INVALID_ARGUMENT", 4400),
    Unauthenticated: Answer(401, "UNAUTHENTICATED", 4401),
    Forbidden: Answer(403, "PERMISSION_DENIED", 4403),
    NotFound: Answer(404, "NOT_FOUND", 4404),
    Conflict: Answer(409, "FAILED_PRECONDITION", 4409),
    AlreadyExists: Answer(409, "ALREADY_EXISTS", 4409),
    TooLarge: Answer(413, "RESOURCE_EXHAUSTED", 4413),
    Unprocessable: Answer(422, "INVALID_ARGUMENT", 4422),
    RateLimited: Answer(429, "RESOURCE_EXHAUSTED", 4429),
    Unavailable: Answer(503, "UNAVAILABLE", 1013),
    Timeout: Answer(504, "DEADLINE_EXCEEDED", 4504),
}

# A gRPC status another service answered with, back to our kind (DESIGN §6: "others 500").
_FROM_GRPC: dict[str, type[StoxError]] = {
    "INVALID_ARGUMENT": InvalidInput,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": Forbidden,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "FAILED_PRECONDITION": Conflict,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": Timeout,
}


def answer_for(exc: BaseException) -> Answer:
    """The row of the nearest class in the table; anything not ours is the root's (500). An
    error that names its HTTP status (`http_status`, a route's own refusal) takes that row."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return _by_http(status)
    for kind in type(exc).__mro__:
        found = ANSWERS.get(kind)
        if found is not None:
            return found
    return ANSWERS[StoxError]


def _by_http(status: int) -> Answer:
    for answer in ANSWERS.values():
        if answer.http == status:
            return answer
    if status >= 500:
        return Answer(status, "INTERNAL", 1011)
    return Answer(status, "INVALID_ARGUMENT", 4000 + status)


def is_internal(exc: BaseException) -> bool:
    """Whether the error must leave as the generic answer, its text only in the log: every
    5xx but the outages, whose messages say what is down and when to come back."""
    status = answer_for(exc).http
    return status >= 500 and status not in (503, 504)


def from_grpc(status_name: str, message: str) -> StoxError:
    """A remote gRPC error as ours, keeping its status name (lower case) as the code."""
    kind = _FROM_GRPC.get(status_name, StoxError)
    return kind(message, code=status_name.lower())
