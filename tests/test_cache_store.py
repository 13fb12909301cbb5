"""The verdict stores, embedded and shared, against one contract; and the embedded store
surviving a writer killed outright."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from proofrace.cache.entry import Entry
from proofrace.cache.redis import RedisStore
from proofrace.cache.sqlite import SqliteStore
from proofrace.cache.store import VerdictStore
from proofrace.core.model import Grounds, Verdict
from tests.support.redis import redis_server


def entry(key: str, provers: tuple[tuple[str, str], ...] = (("z3", "4.8.12"),)) -> Entry:
    return Entry(key, Verdict.PROVED, Grounds.UNCHECKED, provers[0][0], "s-" + key, 1, provers)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["sqlite", "redis"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str):
    """A factory of stores over one backing store (a file, or a Redis server and prefix), so a
    test can open two, as two dispatchers would."""
    opened: list[VerdictStore] = []
    prefix = f"test-{os.urandom(4).hex()}:"

    async def make(max_entries: int = 100) -> VerdictStore:
        store: VerdictStore
        if request.param == "sqlite":
            # Recency at once, not to the minute, so the order of eviction can be seen.
            path = tmp_path / "state" / "verdicts.sqlite3"
            store = await SqliteStore.open(path, max_entries, touch_s=0)
        else:
            store = await RedisStore.open(redis_url, max_entries, prefix=prefix)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def test_a_stored_entry_comes_back_whole(open_store) -> None:
    store = await open_store()
    stored = entry("k1", (("z3", "4.8.12"), ("cvc5", "1.0.3")))
    assert await store.get("k1") is None
    result = await store.put(stored)
    assert (result.size, result.evicted) == (1, 0)
    assert await store.get("k1") == stored
    # Replacing keeps one entry.
    await store.put(entry("k1"))
    assert await store.size() == 1
    assert await store.get("k1") == entry("k1")


async def test_the_size_bound_evicts_the_least_recently_used(open_store) -> None:
    store = await open_store(max_entries=3)
    for key in ("a", "b", "c"):
        await store.put(entry(key))
    await store.get("a")  # used: "b" is now the oldest
    result = await store.put(entry("d"))
    assert (result.size, result.evicted) == (3, 1)
    assert await store.get("b") is None
    assert all([await store.get(k) for k in ("a", "c", "d")])
    assert await store.size() == 3


async def test_invalidation_by_prover_version(open_store) -> None:
    store = await open_store()
    await store.put(entry("old-z3", (("z3", "4.8.12"), ("cvc5", "1.0.3"))))
    await store.put(entry("new-z3", (("z3", "4.13.0"),)))
    await store.put(entry("cvc5", (("cvc5", "1.0.3"),)))
    assert await store.invalidate("z3", "4.8.12") == 1
    assert await store.get("old-z3") is None
    assert await store.get("new-z3") is not None
    assert await store.invalidate("z3", "4.8.12") == 0
    # Every version of a prover at once.
    await store.put(entry("old-z3", (("z3", "4.8.12"),)))
    assert await store.invalidate("z3", None) == 2
    assert await store.size() == 1
    assert await store.get("cvc5") is not None


async def test_two_dispatchers_share_one_store(open_store) -> None:
    first, second = await open_store(max_entries=2), await open_store(max_entries=2)
    await first.put(entry("from-first"))
    assert await second.get("from-first") == entry("from-first")
    await second.put(entry("x"))
    await second.put(entry("y"))  # the bound holds across both writers
    assert await first.size() == 2
    assert await second.invalidate("z3", None) == 2
    assert await first.get("x") is None


async def test_the_embedded_store_rules_out_most_misses_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    # Trusted for a minute after each look, so no step below outlives the trust.
    first = await SqliteStore.open(path, 2, sync_s=60)
    second = await SqliteStore.open(path, 2, sync_s=60)  # another dispatcher on the file
    try:
        assert not first.may_hold("a")
        await first.put(entry("a"))
        assert first.may_hold("a")
        # The other has not looked at the file since: its index, still trusted, rules "a"
        # out. Any lookup through the file looks again.
        assert not second.may_hold("a")
        assert await second.get("b") is None
        assert second.may_hold("a")
        assert await second.get("a") == entry("a")
        # Evicted and invalidated keys leave the index of the store that removed them.
        await first.put(entry("b"))
        await first.put(entry("c"))
        assert not first.may_hold("a")
        assert await second.invalidate("z3", None) == 2
        assert not second.may_hold("b") and not second.may_hold("c")
        # The first's index still holds them: a lookup through the file says they are gone.
        assert first.may_hold("b") and await first.get("b") is None
        # An index past its trust rules nothing out.
        await first.put(entry("d"))
        stale = await SqliteStore.open(path, 2, sync_s=0)
        try:
            assert stale.may_hold("never-stored")
        finally:
            await stale.close()
        # A new store reads every key once, on opening.
        reopened = await SqliteStore.open(path, 2, sync_s=60)
        try:
            assert reopened.may_hold("d") and not reopened.may_hold("a")
        finally:
            await reopened.close()
    finally:
        await first.close()
        await second.close()


# --- the embedded store under several processes and a kill -9 ---------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from proofrace.cache.entry import Entry
    from proofrace.cache.sqlite import SqliteStore
    from proofrace.core.model import Grounds, Verdict

    async def main(path, name, count):
        store = await SqliteStore.open(Path(path), 1_000_000)
        provers = (("z3", "4.8.12"), ("cvc5", "1.0.3"))
        for i in range(count):
            key = f"{name}-{i}"
            big = Entry(key, Verdict.PROVED, Grounds.UNCHECKED, "z3", "x" * 4096, i, provers)
            await store.put(big)
            print(key, flush=True)  # committed
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def start_writer(path: Path, name: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def committed_keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        return {row[0] for row in db.execute("SELECT key FROM verdicts")}


def test_several_processes_write_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    writers = [start_writer(path, f"w{i}", 150) for i in range(3)]
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0
        assert len(out.split()) == 150
    assert len(committed_keys(path)) == 450


@pytest.mark.parametrize("after", [1, 40, 200])
def test_a_writer_killed_mid_write_leaves_a_sound_file(tmp_path: Path, after: int) -> None:
    """kill -9 while a transaction is under way (the writer never stops writing): the file
    is intact, every write it reported as committed is there, and it takes writes again."""
    path = tmp_path / "verdicts.sqlite3"
    writer = start_writer(path, "victim", 1_000_000)
    assert writer.stdout is not None
    reported = [writer.stdout.readline().strip() for _ in range(after)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    reported += [line.strip() for line in writer.stdout]
    assert writer.returncode == -signal.SIGKILL
    keys = committed_keys(path)
    assert set(reported) <= keys
    assert len(keys) <= len(reported) + 1  # at most the transaction it was in when killed

    async def reopen() -> None:
        store = await SqliteStore.open(path, 1_000_000)
        await store.put(entry("after-the-crash"))
        assert await store.get("after-the-crash") == entry("after-the-crash")
        assert await store.get(reported[-1]) is not None
        await store.close()

    asyncio.run(reopen())
