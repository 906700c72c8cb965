"""One error root, one table: every error of every part leaves each door as the table says."""

from __future__ import annotations

import grpc
import pytest

from stox_gateway import errors
from stox_gateway.api.errors import ApiError
from stox_gateway.auth import errors as auth_errors
from stox_gateway.bus.port import BusError, BusUnavailable, Unroutable
from stox_gateway.engine import errors as engine_errors


@pytest.mark.parametrize(
    ("error", "http", "grpc_code", "close"),
    [
        (engine_errors.WorkflowNotFound("w"), 404, "NOT_FOUND", 4404),
        (engine_errors.StaleAttempt("late"), 409, "FAILED_PRECONDITION", 4409),
        (engine_errors.WorkflowEnded("ended"), 409, "FAILED_PRECONDITION", 4409),
        (engine_errors.IdempotencyConflict("reused"), 422, "INVALID_ARGUMENT", 4422),
        (engine_errors.UnknownWorkflowType("x"), 422, "INVALID_ARGUMENT", 4422),
        (engine_errors.Unavailable("db"), 503, "UNAVAILABLE", 1013),
        (auth_errors.InvalidArgument("bad"), 400, "INVALID_ARGUMENT", 4400),
        (auth_errors.Unauthenticated("who"), 401, "UNAUTHENTICATED", 4401),
        (auth_errors.NotFound("none"), 404, "NOT_FOUND", 4404),
        (auth_errors.AlreadyExists("taken"), 409, "ALREADY_EXISTS", 4409),
        (BusError("down"), 503, "UNAVAILABLE", 1013),
        (BusUnavailable("down"), 503, "UNAVAILABLE", 1013),
        (Unroutable("no queue"), 503, "UNAVAILABLE", 1013),
        (ApiError(415, "unsupported_media_type", "json only"), 415, "INVALID_ARGUMENT", 4415),
        (ApiError(404, "not_found", "no asset"), 404, "NOT_FOUND", 4404),
        (errors.StoxError("oops"), 500, "INTERNAL", 1011),
        (RuntimeError("not ours"), 500, "INTERNAL", 1011),
    ],
)
def test_every_error_has_one_answer_per_door(
    error: Exception, http: int, grpc_code: str, close: int
) -> None:
    answer = errors.answer_for(error)
    assert (answer.http, answer.grpc, answer.websocket) == (http, grpc_code, close)
    assert grpc.StatusCode[answer.grpc]  # a real gRPC status name


def test_every_part_derives_from_the_one_root() -> None:
    for kind in (
        engine_errors.CompletionRejected,
        auth_errors.AuthError,
        BusError,
        ApiError,
    ):
        assert issubclass(kind, errors.StoxError)


def test_codes_stay_what_clients_saw() -> None:
    assert engine_errors.StaleAttempt("x").code == "stale_attempt"
    assert auth_errors.AlreadyExists("x").code == "already_exists"
    assert BusError("x").code == "bus_unavailable"
    assert errors.StoxError("x").code == "internal"
    assert errors.Unavailable("x", code="starting").code == "starting"


def test_only_unexpected_errors_hide_their_text() -> None:
    assert errors.is_internal(RuntimeError("SELECT ..."))
    assert errors.is_internal(errors.StoxError("SELECT ..."))
    assert errors.is_internal(ApiError(500, "broken", "x"))
    assert not errors.is_internal(engine_errors.Unavailable("database unavailable"))
    assert not errors.is_internal(errors.Timeout("deadline"))
    assert not errors.is_internal(engine_errors.WorkflowNotFound("w"))


@pytest.mark.parametrize(
    ("status", "kind", "http"),
    [
        ("INVALID_ARGUMENT", errors.InvalidInput, 400),
        ("UNAUTHENTICATED", errors.Unauthenticated, 401),
        ("PERMISSION_DENIED", errors.Forbidden, 403),
        ("NOT_FOUND", errors.NotFound, 404),
        ("ALREADY_EXISTS", errors.AlreadyExists, 409),
        ("RESOURCE_EXHAUSTED", errors.RateLimited, 429),
        ("UNAVAILABLE", errors.Unavailable, 503),
        ("DEADLINE_EXCEEDED", errors.Timeout, 504),
        ("UNKNOWN", errors.StoxError, 500),
        ("INTERNAL", errors.StoxError, 500),
    ],
)
def test_a_remote_grpc_status_becomes_ours_as_design_6_says(
    status: str, kind: type[errors.StoxError], http: int
) -> None:
    error = errors.from_grpc(status, "details")
    assert type(error) is kind
    assert error.code == status.lower()
    assert errors.answer_for(error).http == http
