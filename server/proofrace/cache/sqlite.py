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

A miss is the common case (every new goal), and the hop to that thread and back costs more
than the lookup. So the store also keeps, in memory, the hash of every key it holds
(`KeyIndex`): a key not in it is surely absent, and the lookup answers without leaving the
event loop. Another process sharing the file may store entries this one has not seen: the
index reads the keys written since its last look whenever the file changed, and it is only
trusted for `SYNC_S` after that look (a lookup past that goes to the file, and looks again).
Keys others removed linger in the index and cost a lookup; it is read whole again once it
holds twice the bound.
"""

from __future__ import annotations

import asyncio
import math
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
# How long the key index is trusted after it last looked at the file.
SYNC_S = 1.0
# A key written by another process has a recency stamp from before its commit; the index
# reads back this far (the longest a writer may wait for the lock, and then some).
_WRITE_SKEW_US = (BUSY_MS + 1000) * 1000

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

    def __init__(
        self, path: Path, max_entries: int, touch_s: float = TOUCH_S, sync_s: float = SYNC_S
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self._touch_us = round(touch_s * 1e6)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-sqlite")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._index = KeyIndex(max_entries, sync_s)

    @classmethod
    async def open(
        cls, path: Path, max_entries: int, touch_s: float = TOUCH_S, sync_s: float = SYNC_S
    ) -> SqliteStore:
        store = cls(path, max_entries, touch_s, sync_s)
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
        self._index.sync(db)

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

    def may_hold(self, key: str) -> bool:
        # A closed store rules nothing out: the lookup tells the caller it is closed.
        return self._closed or self._index.may_hold(key)

    async def get(self, key: str) -> Entry | None:
        def get() -> Entry | None:
            self._index.sync(self.db)
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
                evicted: list[str] = []
                if size > self.max_entries:
                    evicted = _keys(
                        db.execute(
                            "DELETE FROM verdicts WHERE key IN "
                            "(SELECT key FROM verdicts ORDER BY used_us LIMIT ?) RETURNING key",
                            (size - self.max_entries,),
                        )
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._index.add(entry.key)
            self._index.discard(evicted)
            return Stored(size - len(evicted), len(evicted))

        return await self._call(put)

    async def invalidate(self, prover: str, version: str | None) -> int:
        def invalidate() -> int:
            where = "prover = ?" + (" AND version = ?" if version is not None else "")
            args = (prover, version) if version is not None else (prover,)
            matching = f"SELECT key FROM verdict_provers WHERE {where}"
            removed = _keys(
                self.db.execute(
                    f"DELETE FROM verdicts WHERE key IN ({matching}) RETURNING key", args
                )
            )
            self._index.discard(removed)
            return len(removed)

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


class KeyIndex:
    """The hash of every key the file holds, as last seen, to answer most misses in memory.
    Written on the store's thread, read on the event loop: one set, swapped whole or changed
    by single operations, each atomic in Python. About 80 bytes an entry."""

    def __init__(self, max_entries: int, sync_s: float = SYNC_S) -> None:
        self._max_entries = max_entries
        self._sync_s = sync_s
        self._hashes: set[int] = set()
        self._synced_at = -math.inf  # monotonic; trusted until sync_s after
        self._version: int | None = None  # the file's data_version at the last look
        self._since_us = 0  # keys stamped from then on are read at the next look

    def may_hold(self, key: str) -> bool:
        """False only when the file surely lacks `key` (as of at most sync_s ago)."""
        if time.monotonic() - self._synced_at > self._sync_s:
            return True
        return hash(key) in self._hashes

    def add(self, key: str) -> None:
        self._hashes.add(hash(key))

    def discard(self, keys: list[str]) -> None:
        for key in keys:
            self._hashes.discard(hash(key))

    def sync(self, db: sqlite3.Connection) -> None:
        """Look at the file (on the store's thread): read the keys other connections wrote
        since the last look, or all of them the first time and once stale ones pile up."""
        looked_at, now_us = time.monotonic(), _now_us()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if self._version is None or len(self._hashes) > 2 * self._max_entries:
            self._hashes = {hash(k) for k in _keys(db.execute("SELECT key FROM verdicts"))}
        elif version != self._version:
            written = db.execute("SELECT key FROM verdicts WHERE used_us >= ?", (self._since_us,))
            self._hashes.update(hash(k) for k in _keys(written))
        self._version, self._synced_at = version, looked_at
        self._since_us = now_us - _WRITE_SKEW_US


def _keys(cursor: sqlite3.Cursor) -> list[str]:
    return [row[0] for row in cursor.fetchall()]


def _now_us() -> int:
    return time.time_ns() // 1000
