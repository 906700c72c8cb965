"""Uploads and thumbnails (`media.store`): a local folder, or the database every process shares."""

from __future__ import annotations

from stox_gateway.config.settings import Settings
from stox_gateway.media.port import MediaFile, MediaStore, MediaUnavailable, valid_name

__all__ = ["MediaFile", "MediaStore", "MediaUnavailable", "media_store", "valid_name"]


def media_store(settings: Settings, store: object | None = None) -> MediaStore:
    """The configured adapter; `store` (a started `SqlStore`) is shared by the database one,
    which otherwise opens a store of its own at first use (worker processes)."""
    media = settings.media
    if media.store == "database":
        from stox_gateway.media.database import DatabaseMediaStore
        from stox_gateway.store.sql import SqlStore

        return DatabaseMediaStore(
            store if isinstance(store, SqlStore) else None,
            url=settings.database.url.get_secret_value(),
            schema=settings.database.schema_name,
            chunk_bytes=media.chunk_bytes,
        )
    from stox_gateway.media.local import LocalMediaStore

    return LocalMediaStore(media.shared_path or media.root)
