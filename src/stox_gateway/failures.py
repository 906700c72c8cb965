"""A failure in words a shop person can act on, with the technical detail kept apart.

A step's `error` is stored as one text: a sentence for people, then, after a blank line, the
technical detail (what the SDK's `StepError(message, detail=...)` sends). Texts from before, or
from services that send one technical line, are read here: the common failures (a download
refused, timed out or not resolved, an image that cannot be decoded or is too large, a deadline
passed, a worker that refused the step) become sentences; anything else that looks like a Python
exception becomes "the service failed unexpectedly", its text kept as the detail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

DETAIL_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Failure:
    message: str  # one or two sentences, no Python reprs
    detail: str | None = None  # the technical text, for whoever runs the services


def join(message: str, detail: str | None) -> str:
    """The stored form: the sentence, then the detail after a blank line."""
    return f"{message}{DETAIL_SEPARATOR}{detail}" if detail else message


def step_name(step_type: str | None) -> str:
    return (step_type or "the").replace("_", " ")


_Q = r"""['"`]?(?P<ref>.+?)['"`]?"""
_DNS = re.compile(r"Errno -[235]\]|Name or service not known|nodename nor servname|getaddrinfo")
_REFUSED = re.compile(r"Connection refused|Errno 111\]|ECONNREFUSED", re.I)
_PYTHON_ERROR = re.compile(
    r"^\s*[A-Z]\w*(Error|Exception|Exit|Interrupt|Timeout)\b|Errno|object at 0x"
)
_WORKFLOW_FAILED = re.compile(
    r"^(?P<step>[a-z][a-z0-9_]*) failed after (?P<n>\d+) attempt\(s\): ", re.S
)


def _http_reason(status: str) -> str:
    reasons = {
        "403": "access denied",
        "404": "not found",
        "410": "gone",
        "429": "too many requests",
    }
    reason = reasons.get(status) or ("a server error" if status.startswith("5") else "refused")
    return f"the server answered {status} ({reason})"


def _mb(value: str) -> str:
    return f"{int(value) / 1_048_576:.1f} MB"


# (pattern over the first paragraph, sentence builder); first match wins.
_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]]] = [
    (
        re.compile(rf"^image {_Q} (was not downloaded within|timed out after) (?P<s>[\d.]+)s"),
        lambda m, _: (
            f"The image `{m['ref']}` could not be downloaded: the host did not answer "
            f"within {float(m['s']):g} seconds."
        ),
    ),
    (
        re.compile(rf"^image {_Q} could not be downloaded\b"),
        lambda m, text: (
            f"The image `{m['ref']}` could not be downloaded: "
            + (
                "its host name was not found."
                if _DNS.search(text)
                else "the host refused the connection."
                if _REFUSED.search(text)
                else "the host did not answer."
            )
        ),
    ),
    (
        re.compile(rf"^image {_Q} answered HTTP (?P<status>\d{{3}})"),
        lambda m, _: (
            f"The image `{m['ref']}` could not be downloaded: {_http_reason(m['status'])}."
        ),
    ),
    (
        re.compile(rf"^image {_Q} is not allowed: the host .* cannot be resolved"),
        lambda m, _: (
            f"The image `{m['ref']}` could not be downloaded: its host name was not found."
        ),
    ),
    (
        re.compile(rf"^image {_Q} is not allowed"),
        lambda m, _: (
            f"The image `{m['ref']}` is at an address the gateway may not fetch from "
            "(a private or local network)."
        ),
    ),
    (
        re.compile(rf"^image {_Q} is not a valid URL"),
        lambda m, _: f"The image `{m['ref']}` is not a valid web address.",
    ),
    (
        re.compile(rf"^image {_Q} is (?P<n>\d+) bytes, more than the (?P<limit>\d+) allowed"),
        lambda m, _: (
            f"The image `{m['ref']}` is too large: {_mb(m['n'])}, more than the "
            f"{_mb(m['limit'])} allowed."
        ),
    ),
    (
        re.compile(rf"^image {_Q} is larger than the (?P<limit>\d+) bytes allowed"),
        lambda m, _: (
            f"The image `{m['ref']}` is too large: more than the {_mb(m['limit'])} allowed."
        ),
    ),
    (
        re.compile(rf"^image {_Q} has (?P<w>\d+)x(?P<h>\d+) pixels, more than the (?P<max>\d+)"),
        lambda m, _: (
            f"The image `{m['ref']}` is too large: {m['w']}×{m['h']} pixels, more than "
            f"the {int(m['max']):,} allowed."
        ),
    ),
    (
        re.compile(rf"^image {_Q} (is not a valid image|could not be thumbnailed)"),
        lambda m, _: (
            f"The image `{m['ref']}` could not be read: the file is damaged or is not a picture."
        ),
    ),
    (
        re.compile(rf"^image {_Q} was not found in the media folder"),
        lambda m, _: f"The image `{m['ref']}` is not in the media folder.",
    ),
    (
        re.compile(r"^thumbnail .* could not be written"),
        lambda m, _: "The thumbnail could not be saved (the disk may be full or read-only).",
    ),
    (
        re.compile(
            r"^(?:(?P<step>[a-z][a-z0-9_]*) )?attempt (?:\d+ )?exceeded its deadline of "
            r"(?P<s>[\d.]+)s"
        ),
        lambda m, _: (
            f"The {step_name(m['step']) + ' step' if m['step'] else 'step'} did not "
            "finish within "
            f"{float(m['s']):g} seconds."
        ),
    ),
    (
        re.compile(r"^interrupted: (?P<step>[a-z][a-z0-9_]*) failed"),
        lambda m, _: f"Stopped because the {step_name(m['step'])} step failed.",
    ),
    (re.compile(r"^cancelled by request$"), lambda m, _: "Cancelled by request."),
    (re.compile(r"^cancelled$"), lambda m, _: "Cancelled."),
    (
        re.compile(r"^not a step message"),
        lambda m, _: "The worker refused the step: its message could not be read.",
    ),
    (
        re.compile(r"^the service reported a failure without a message$"),
        lambda m, _: "The service reported a failure without saying why.",
    ),
]


def describe(error: str | None, step_type: str | None = None) -> Failure | None:
    """`error` as stored (a step's or a workflow's) in words, with its technical detail."""
    if not error or not error.strip():
        return None
    ended = _WORKFLOW_FAILED.match(error)
    if ended:
        inner = describe(error[ended.end() :], ended["step"])
        attempts = int(ended["n"])
        tail = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        message = inner.message if inner else "The step failed."
        if tail:
            message = message.rstrip(".") + tail + "."
        return Failure(message, inner.detail if inner else None)
    head, _, rest = error.strip().partition(DETAIL_SEPARATOR)
    head = head.strip()
    detail = rest.strip() or None
    for pattern, sentence in _RULES:
        found = pattern.search(head)
        if found:
            # The technical line itself is the detail when the service sent nothing more.
            return Failure(sentence(found, error), detail or head)
    if _PYTHON_ERROR.search(head) or "\n" in head or len(head) > 300:
        who = f"The {step_name(step_type)} service" if step_type else "The service"
        if _DNS.search(head):
            why = "could not connect: a host name was not found."
        elif _REFUSED.search(head):
            why = "could not connect: the connection was refused."
        elif re.search(r"timed? ?out|Timeout", head, re.I):
            why = "did not get an answer in time."
        else:
            why = "failed unexpectedly."
        return Failure(f"{who} {why}", error.strip())
    return Failure(head, detail)  # the service's own words, as it wrote them
