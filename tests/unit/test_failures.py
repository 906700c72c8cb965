"""A failure in words a shop person can act on, its technical detail apart, no Python reprs."""

from __future__ import annotations

import re

import pytest

from stox_gateway.failures import Failure, describe, join

REPR = re.compile(r"\w+Error\(|Errno|object at 0x|Traceback")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            "image 'https://cdn.example.com/x.jpg' could not be downloaded",
            "The image `https://cdn.example.com/x.jpg` could not be downloaded: the host did "
            "not answer.",
        ),
        (
            "image 'https://x.invalid/a.jpg' is not allowed: the host 'x.invalid' cannot be "
            "resolved",
            "The image `https://x.invalid/a.jpg` could not be downloaded: its host name was not "
            "found.",
        ),
        (
            "image 'https://h.example/a.jpg' answered HTTP 403",
            "The image `https://h.example/a.jpg` could not be downloaded: the server answered "
            "403 (access denied).",
        ),
        (
            "image 'https://h.example/a.jpg' was not downloaded within 30s",
            "The image `https://h.example/a.jpg` could not be downloaded: the host did not "
            "answer within 30 seconds.",
        ),
        (
            "image 'x.jpg' is not a valid image: cannot identify image file "
            "<_io.BytesIO object at 0x7f3a>",
            "The image `x.jpg` could not be read: the file is damaged or is not a picture.",
        ),
        (
            "image 'big.png' has 8000x8000 pixels, more than the 40000000 allowed",
            "The image `big.png` is too large: 8000×8000 pixels, more than the 40,000,000 allowed.",
        ),
        (
            "image 'https://h.example/a.jpg' is 20971520 bytes, more than the 10485760 allowed",
            "The image `https://h.example/a.jpg` is too large: 20.0 MB, more than the 10.0 MB "
            "allowed.",
        ),
        (
            "image_processing attempt 3 exceeded its deadline of 30s",
            "The image processing step did not finish within 30 seconds.",
        ),
        (
            "not a step message: invalid JSON",
            "The worker refused the step: its message could not be read.",
        ),
        ("cancelled", "Cancelled."),
    ],
)
def test_common_failures_read_as_sentences(error: str, message: str) -> None:
    failure = describe(error, "image_processing")
    assert failure is not None
    assert failure.message == message
    assert failure.detail == error  # the technical line is kept, folded away
    assert not REPR.search(failure.message)


def test_a_workflow_failure_says_how_many_attempts_once() -> None:
    failure = describe(
        "image_processing failed after 3 attempt(s): image 'x.jpg' was not found in the "
        "media folder"
    )
    assert failure == Failure(
        "The image `x.jpg` is not in the media folder (gave up after 3 attempts).",
        "image 'x.jpg' was not found in the media folder",
    )


def test_a_python_repr_becomes_a_sentence_with_the_repr_as_detail() -> None:
    error = "ConnectError('[Errno 111] Connection refused')"
    failure = describe(error, "translation")
    assert failure == Failure(
        "The translation service could not connect: the connection was refused.", error
    )


def test_a_services_own_sentence_and_detail_are_kept_apart() -> None:
    assert describe(join("The product has no name.", "KeyError: 'name'")) == Failure(
        "The product has no name.", "KeyError: 'name'"
    )
    assert describe("quota of the translation API reached") == Failure(
        "quota of the translation API reached", None
    )
    assert describe(None) is None and describe("  ") is None
