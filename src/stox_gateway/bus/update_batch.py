"""One `gateway.update` message per relay batch, whatever the owners in it.

The body is a JSON array of `[owner, [update, ...]]` entries (owner null for a workflow without
one), marked by the `x-stox-update-batch` header; the `BCC` header names the owner and workflow
buckets inside (`routing.update_bucket_keys`), so the broker delivers the message only to the
replicas whose clients follow one of them. A message without the marker is the older form: an
array of updates (or one update) of the owner in `x-owner`, still read the same way.

The body is built from the rows' bytes without decoding the updates; only their workflow ids
are read, for the buckets.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from stox_gateway import codec
from stox_gateway.bus.port import Message
from stox_gateway.engine.models import JSON
from stox_gateway.routing import GATEWAY_UPDATE, UPDATE_BUCKETS_HEADER, update_bucket_keys
from stox_gateway.store.port import OutboxRow

BATCH_HEADER = "x-stox-update-batch"
OWNER_HEADER = "x-owner"


def entry_size(row: OutboxRow) -> int:
    """An upper bound of what `row` adds to a batch's body: its updates, its owner's entry
    (as if it were the owner's only row) and the commas and brackets around them."""
    return len(row.body) + len(codec.dumps(row.headers.get(OWNER_HEADER))) + 6


def encode(rows: Sequence[OutboxRow]) -> Message:
    """The message of the `gateway.update` rows of one batch, in row order per owner (so a
    workflow's updates stay in seq order: a workflow has one owner)."""
    by_owner: dict[str | None, list[bytes]] = {}
    workflow_ids: set[str] = set()
    for row in rows:
        by_owner.setdefault(row.headers.get(OWNER_HEADER), []).append(_elements(row.body))
        workflow_ids.update(_workflow_ids(row.body))
    body = (
        b"["
        + b",".join(
            b"[" + codec.dumps(owner) + b",[" + b",".join(parts) + b"]]"
            for owner, parts in by_owner.items()
        )
        + b"]"
    )
    first = rows[0]
    headers = {k: v for k, v in first.headers.items() if k != OWNER_HEADER}
    headers[BATCH_HEADER] = "1"
    headers[UPDATE_BUCKETS_HEADER] = update_bucket_keys(by_owner, workflow_ids)
    alone = len(rows) == 1
    return Message(
        routing_key=GATEWAY_UPDATE,
        body=body,
        # An id of its own when merged: sent again after a crash, it may carry other rows.
        message_id=first.message_id if alone else str(uuid.uuid4()),
        correlation_id=first.correlation_id if alone else None,
        headers=headers,
    )


def decode(message: Message) -> list[tuple[str | None, list[JSON]]]:
    """The updates of a `gateway.update` message, per owner."""
    body: Any = codec.loads(message.body)
    if message.headers.get(BATCH_HEADER):
        return [(owner, list(updates)) for owner, updates in body]
    owner = message.headers.get(OWNER_HEADER)
    return [(owner, body if isinstance(body, list) else [body])]


def _elements(body: bytes) -> bytes:
    """The updates of one row's body: an array's inside, or a single update (rows written
    before updates were grouped per transition)."""
    return body[1:-1] if body[:1] == b"[" else body


def _workflow_ids(body: bytes) -> set[str]:
    decoded: Any = codec.loads(body)
    updates = decoded if isinstance(decoded, list) else [decoded]
    return {str(u["workflow_id"]) for u in updates if isinstance(u, dict) and "workflow_id" in u}
