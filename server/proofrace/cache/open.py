"""Opening the store a server's settings name."""

from __future__ import annotations

from pathlib import Path

from proofrace.cache.redis import RedisStore
from proofrace.cache.sqlite import SqliteStore
from proofrace.cache.store import VerdictStore


async def open_store(kind: str, url: str, path: Path, max_entries: int) -> VerdictStore | None:
    """`kind`: sqlite (the file at `path`), redis (at `url`) or off (None). Raises StoreError
    when the store cannot be opened."""
    if kind == "redis":
        return await RedisStore.open(url, max_entries)
    if kind == "sqlite":
        return await SqliteStore.open(path, max_entries)
    return None
