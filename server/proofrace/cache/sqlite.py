"""The embedded store: one SQLite file in the service's state directory.

- WAL journal: readers never wait for the writer, and several processes (dispatchers, the
  `proofrace cache` command) may open the file at once; a writer waits up to `BUSY_MS` for
  another's lock.
- `synchronous = NORMAL`: a commit is durable once it reaches the operating system, so a
  process killed outright (`kill -9`) mid-write loses at most the transaction it was in, and
  never corrupts the file. (Only a power loss may drop the last commits, never corrupt.)
- Each write is one transaction: the entry, its provers, and the eviction that keeps the size
  within `max_entries`, least recently used first.

sqlite3 blocks, so every call runs on one thread of its own, off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from proofrace.cache.entry import Entry
from proofrace.cache.store import Stored, StoreError

T = TypeVar("T")
BUSY_MS = 5000
# Recency to the minute is enough for eviction, and spares most hits a write.
TOUCH_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
  key TEXT PRIMARY KEY,
  entry TEXT NOT NULL,
  used_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_used ON verdicts (used_us);
CREATE TABLE IF NOT EXISTS verdict_provers (
  key TEXT NOT NULL REFERENCES verdicts (key) ON DELETE CASCADE,
  prover TEXT NOT NULL,
  version TEXT NOT NULL,
  PRIMARY KEY (key, prover)
);
CREATE INDEX IF NOT EXISTS verdict_provers_version ON verdict_provers (prover, version);
"""


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, max_entries: int, touch_s: float = TOUCH_S) -> None:
        self.path = path
        self.max_entries = max_entries
        self._touch_us = round(touch_s * 1e6)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, max_entries: int, touch_s: float = TOUCH_S) -> SqliteStore:
        store = cls(path, max_entries, touch_s)
        await store._call(store._open)
        return store

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(_SCHEMA)
        self._db = db

    async def _call(self, work: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError(f"sqlite {self.path}: the store is closed")

        def guarded() -> T:
            try:
                return work()
            except sqlite3.Error as error:
                raise StoreError(f"sqlite {self.path}: {error}") from error

        return await asyncio.get_running_loop().run_in_executor(self._thread, guarded)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "the store is closed"
        return self._db

    async def get(self, key: str) -> Entry | None:
        def get() -> Entry | None:
            row = self.db.execute(
                "SELECT entry, used_us FROM verdicts WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            now = _now_us()
            if now - row[1] >= self._touch_us:
                self.db.execute("UPDATE verdicts SET used_us = ? WHERE key = ?", (now, key))
            return Entry.from_json(key, row[0])

        return await self._call(get)

    async def put(self, entry: Entry) -> Stored:
        def put() -> Stored:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                # A plain delete first, so the old entry's provers go with it (cascade).
                db.execute("DELETE FROM verdicts WHERE key = ?", (entry.key,))
                db.execute(
                    "INSERT INTO verdicts (key, entry, used_us) VALUES (?, ?, ?)",
                    (entry.key, entry.to_json(), _now_us()),
                )
                db.executemany(
                    "INSERT INTO verdict_provers (key, prover, version) VALUES (?, ?, ?)",
                    [(entry.key, name, version) for name, version in entry.provers],
                )
                size = db.execute("SELECT count(*) FROM verdicts").fetchone()[0]
                evicted = max(0, size - self.max_entries)
                if evicted:
                    db.execute(
                        "DELETE FROM verdicts WHERE key IN "
                        "(SELECT key FROM verdicts ORDER BY used_us LIMIT ?)",
                        (evicted,),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return Stored(size - evicted, evicted)

        return await self._call(put)

    async def invalidate(self, prover: str, version: str | None) -> int:
        def invalidate() -> int:
            where = "prover = ?" + (" AND version = ?" if version is not None else "")
            args = (prover, version) if version is not None else (prover,)
            matching = f"SELECT key FROM verdict_provers WHERE {where}"
            cursor = self.db.execute(f"DELETE FROM verdicts WHERE key IN ({matching})", args)
            return cursor.rowcount

        return await self._call(invalidate)

    async def size(self) -> int:
        return await self._call(
            lambda: int(self.db.execute("SELECT count(*) FROM verdicts").fetchone()[0])
        )

    async def close(self) -> None:
        self._closed = True
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._thread, db.close)
        self._thread.shutdown(wait=False)


def _now_us() -> int:
    return time.time_ns() // 1000
