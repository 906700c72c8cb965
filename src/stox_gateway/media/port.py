"""The media store port: uploads and thumbnails by name, wherever they are kept.

A name is a relative POSIX path (`image1.jpg`, `thumbnails/<workflow>_0_<hash>.jpg`): no empty,
`.` or `..` part, no hidden part, no backslash or NUL. A file a workflow owns (its thumbnails)
is named `<folder>/<workflow id>_<rest>` and given that owner when written, so retention can
delete a pruned workflow's files by id in either adapter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stox_gateway.errors import MediaUnavailable

__all__ = ["MediaFile", "MediaStore", "MediaUnavailable", "valid_name"]


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A file found by `open`: its size and version, and its bytes read on demand."""

    name: str
    size: int
    etag: str  # changes whenever the file is written again
    chunks: Callable[[], AsyncIterator[bytes]]


class MediaStore(Protocol):
    async def put(self, name: str, data: bytes, *, owner: str | None = None) -> None:
        """Write (or replace) `name` whole; readers see the old or the new file, never half."""

    async def read(self, name: str) -> bytes | None:
        """The whole file, or None when there is none (or the name is not valid)."""

    async def open(self, name: str) -> MediaFile | None:
        """The file to stream, or None when there is none (or the name is not valid)."""

    async def delete(self, names: Sequence[str]) -> int:
        """Delete these files; how many there were."""

    async def delete_owned(self, workflow_ids: Sequence[str]) -> int:
        """Delete every file these workflows own; how many there were."""

    async def count_owned(self, workflow_ids: Sequence[str]) -> int:
        """How many files these workflows own (what `delete_owned` would delete)."""

    async def close(self) -> None: ...


def valid_name(name: str) -> bool:
    if not name or "\x00" in name or "\\" in name or len(name) > 512:
        return False
    return all(part not in ("", ".", "..") and not part.startswith(".") for part in name.split("/"))


def owned_prefix(workflow_id: str) -> str:
    """What the last part of an owned file's name starts with."""
    return f"{workflow_id}_"
