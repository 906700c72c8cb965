"""`LocalMediaStore`: media as files in one folder (`media.shared_path`, else `media.root`).

Writes go to a hidden temporary file renamed into place; reads refuse anything that resolves
outside the folder (symbolic links included), hidden files and folders.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from stox_gateway.media.port import MediaFile, MediaUnavailable, owned_prefix, valid_name

READ_CHUNK = 64 * 1024


class LocalMediaStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, name: str) -> Path | None:
        """The regular file `name` names under the folder, or None."""
        if not valid_name(name):
            return None
        try:
            base = self.root.resolve()
            target = base.joinpath(*name.split("/")).resolve()
        except (OSError, RuntimeError, ValueError):
            return None
        if not target.is_relative_to(base) or not target.is_file():
            return None
        return target

    async def put(self, name: str, data: bytes, *, owner: str | None = None) -> None:
        if not valid_name(name):
            raise ValueError(f"invalid media name {name!r}")
        try:
            await asyncio.to_thread(_write_atomically, self.root.joinpath(*name.split("/")), data)
        except OSError as exc:
            raise MediaUnavailable(f"media file {name} could not be written: {exc}") from exc

    async def read(self, name: str) -> bytes | None:
        path = self.path_of(name)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise MediaUnavailable(f"media file {name} could not be read: {exc}") from exc

    async def open(self, name: str) -> MediaFile | None:
        path = self.path_of(name)
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            handle = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                    yield chunk
            finally:
                handle.close()

        etag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
        return MediaFile(name, stat.st_size, etag, chunks)

    async def delete(self, names: Sequence[str]) -> int:
        paths = [p for p in (self.path_of(n) for n in names) if p is not None]
        return await asyncio.to_thread(_unlink_all, paths)

    async def delete_owned(self, workflow_ids: Sequence[str]) -> int:
        return await asyncio.to_thread(lambda: _unlink_all(self._owned(workflow_ids)))

    async def count_owned(self, workflow_ids: Sequence[str]) -> int:
        return len(await asyncio.to_thread(self._owned, workflow_ids))

    def _owned(self, workflow_ids: Sequence[str]) -> list[Path]:
        """Files `<folder>/<id>_*` one level down (thumbnails/): each folder is listed once for
        all the ids (a glob per id would list it once per id)."""
        wanted = {owned_prefix(i) for i in workflow_ids if valid_name(i) and "/" not in i}
        if not wanted or not self.root.is_dir():
            return []
        found: list[Path] = []
        for folder in os.scandir(self.root):
            if folder.name.startswith(".") or not folder.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(folder.path):
                owner, underscore, _ = entry.name.partition("_")
                if underscore and owner + "_" in wanted and entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
        return found

    async def close(self) -> None:
        pass


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; media files are meant to be served
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _unlink_all(paths: Sequence[Path]) -> int:
    deleted = 0
    for path in paths:
        try:
            path.unlink()
            deleted += 1
        except FileNotFoundError:
            pass
    return deleted
