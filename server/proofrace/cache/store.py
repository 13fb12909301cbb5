"""What the verdict cache asks of a store. SQLite (`sqlite.py`) is embedded; Redis (`redis.py`)
is shared by several dispatchers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proofrace.cache.entry import Entry


@dataclass(frozen=True)
class Stored:
    size: int  # entries held after the write
    evicted: int  # entries evicted to make room


class VerdictStore(Protocol):
    """Keyed by `Entry.key`; bounded: a write beyond the bound evicts the least recently used
    entries. Every method may raise OSError-like errors from the backing store (`StoreError`)."""

    name: str

    def may_hold(self, key: str) -> bool:
        """False when the store surely lacks `key`, answered at once without I/O; True when it
        may hold it (`get` tells)."""
        ...

    async def get(self, key: str) -> Entry | None:
        """The entry, marked as just used; None when absent."""
        ...

    async def put(self, entry: Entry) -> Stored:
        """Insert or replace."""
        ...

    async def invalidate(self, prover: str, version: str | None) -> int:
        """Remove every entry whose race included `prover` (at `version`, or any version).
        Returns how many went."""
        ...

    async def size(self) -> int: ...

    async def close(self) -> None: ...


class StoreError(Exception):
    """The store could not answer (unreachable, locked too long, corrupt)."""
