"""The verdict cache and shared races through the real server: real sockets, real provers, a
real SQLite file and a real Redis server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV, server_args

from proofrace.client import CachePolicy, CancelCause, Client, SolveState, Source, Verdict
from tests.support.redis import redis_server
from tests.support.server import RunningServer

from harness import SAMPLES, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()
HARD_FILE = SAMPLES / "pigeonhole-12.cnf"
HARD = HARD_FILE.read_text()
SAT = ["cadical", "minisat"]


def cache_env(state: Path, **more: str) -> dict[str, str]:
    return {
        **SERVER_ENV,
        "PROOFRACE_CACHE": "sqlite",
        "PROOFRACE_SHARE_RACES": "true",
        "PROOFRACE_STATE_DIR": str(state),
        **more,
    }


@pytest.fixture
def cached_server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(server_args(tmp_path), cache_env(tmp_path / "state")) as server:
        yield server


def attempts_started(server: RunningServer) -> list[dict]:
    return server.events(event="attempt.started")


def test_a_hit_answers_at_once_and_says_where_it_came_from(cached_server, run) -> None:
    server = cached_server

    async def scenario():
        async with Client.connect(server.address) as client:
            raced = await (await client.solve(EASY, provers=["z3", "cvc5"])).result()
            server.wait_event(event="cache.stored", solve_id=raced.solve_id)
            # Same goal, other comments and layout, another goal id and deadline.
            relaid = "; edited\n" + EASY.replace("\n", "\n\n  ")
            job = await client.solve(relaid, provers=["cvc5", "z3"], goal_id="g2", time_limit=9)
            status = await job.status()  # the first call already knows
            return raced, status, await job.result()

    raced, status, hit = run(scenario())
    assert raced.source is Source.RACE and raced.verdict is Verdict.PROVED
    assert status.source is Source.CACHE and status.state is SolveState.FINISHED
    assert hit.verdict is Verdict.PROVED and hit.source is Source.CACHE
    assert hit.goal_id == "g2" and hit.attempts == () and hit.winner == raced.winner
    assert hit.cached is not None
    assert hit.cached.found_by == raced.winner and hit.cached.solve_id == raced.solve_id
    assert hit.grounds is raced.grounds and raced.grounds.value != "none"  # stored with it
    assert len(attempts_started(server)) == 2  # the hit started nothing
    assert server.metric("proofrace_cache_hits_total") == 1
    assert server.metric("proofrace_cache_misses_total") == 1
    assert server.metric("proofrace_cache_entries") == 1
    assert server.metric("proofrace_cache_hit_latency_seconds_count") == 1


def test_verdicts_survive_a_restart_and_an_operator_invalidates_them(tmp_path, run) -> None:
    state = tmp_path / "state"

    async def solve(server: RunningServer):
        async with Client.connect(server.address) as client:
            return await (await client.solve(EASY, provers=["z3"])).result()

    with running_server(server_args(tmp_path), cache_env(state)) as server:
        first = run(solve(server))
        server.wait_event(event="cache.stored", solve_id=first.solve_id)
    with running_server(server_args(tmp_path), cache_env(state)) as server:
        assert run(solve(server)).source is Source.CACHE
        cli = [sys.executable, "-m", "proofrace.cli.main", "cache"]
        env = {**os.environ, "PROOFRACE_STATE_DIR": str(state)}
        stats = subprocess.run([*cli, "stats"], env=env, capture_output=True, text=True)
        assert stats.returncode == 0 and ": 1 verdicts" in stats.stdout
        other = subprocess.run(
            [*cli, "invalidate", "--prover", "z3", "--version", "0.0.1"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert other.returncode == 0 and "removed 0 verdicts" in other.stdout
        z3_version = run(_version(server, "z3"))
        done = subprocess.run(
            [*cli, "invalidate", "--prover", "z3", "--version", z3_version],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0 and "removed 1 verdicts" in done.stdout, done
        assert run(solve(server)).source is Source.RACE


async def _version(server: RunningServer, prover: str) -> str:
    async with Client.connect(server.address) as client:
        return next(p.version for p in await client.provers() if p.name == prover)


def test_bypass_and_refresh_race_again(cached_server, run) -> None:
    server = cached_server

    async def scenario():
        async with Client.connect(server.address) as client:
            first = await (await client.solve(EASY, provers=["z3"])).result()
            server.wait_event(event="cache.stored", solve_id=first.solve_id)
            bypass = await client.solve(EASY, provers=["z3"], cache=CachePolicy.BYPASS)
            bypassed = await bypass.result()
            fresh = await client.solve(EASY, provers=["z3"], cache=CachePolicy.REFRESH)
            refreshed = await fresh.result()
            server.wait_event(event="cache.stored", solve_id=refreshed.solve_id)
            hit = await (await client.solve(EASY, provers=["z3"])).result()
            return bypassed, refreshed, hit

    bypassed, refreshed, hit = run(scenario())
    assert bypassed.source is Source.RACE and refreshed.source is Source.RACE
    assert hit.source is Source.CACHE
    assert hit.cached is not None and hit.cached.solve_id == refreshed.solve_id
    assert len(attempts_started(server)) == 3
    assert server.events(event="cache.stored", solve_id=bypassed.solve_id) == []


def test_certified_only_takes_only_checked_or_confirmed_verdicts(cached_server, run) -> None:
    server = cached_server
    sat_cnf = "p cnf 3 2\n1 -2 0\n2 3 0\n"

    async def scenario():
        async with Client.connect(server.address) as client:

            async def solve(text: str, provers: list[str], policy: CachePolicy):
                outcome = await (await client.solve(text, provers=provers, cache=policy)).result()
                if outcome.source is Source.RACE:
                    server.wait_event(event="cache.stored", solve_id=outcome.solve_id)
                return outcome

            word = await solve(EASY, ["z3"], CachePolicy.USE)  # one prover's word
            strict = await solve(EASY, ["z3"], CachePolicy.CERTIFIED_ONLY)
            loose = await solve(EASY, ["z3"], CachePolicy.USE)
            model = await solve(sat_cnf, ["cadical"], CachePolicy.USE)  # its model is checked
            checked = await solve(sat_cnf, ["cadical"], CachePolicy.CERTIFIED_ONLY)
            return word, strict, loose, model, checked

    word, strict, loose, model, checked = run(scenario())
    assert word.grounds.value == "unchecked"
    assert strict.source is Source.RACE and loose.source is Source.CACHE
    assert model.verdict is Verdict.REFUTED and model.grounds.value == "modelChecked"
    assert checked.source is Source.CACHE and checked.grounds.value == "modelChecked"


def test_two_clients_share_one_race_and_each_hears_its_own_cause(cached_server, run) -> None:
    """Two connections solve the same hard goal: one set of provers runs. The first caller's
    cancel ends only its own solve; the provers stop when the second leaves, with its cause."""
    server = cached_server

    async def scenario():
        async with Client.connect(server.address) as a, Client.connect(server.address) as b:
            job_a = await a.solve(HARD, provers=SAT)
            race_id = (await job_a.status()).solve_id
            server.wait_for_events(
                lambda e: e["event"] == "attempt.started" and e["solve_id"] == race_id, 2
            )
            job_b = await b.solve(HARD, provers=SAT)
            status_b = await job_b.status()
            await job_a.cancel("a has seen enough")
            outcome_a = await job_a.result()
            running = await job_b.status()
            pids = server.prover_pids()
            await job_b.cancel("b too")
            return race_id, status_b, outcome_a, running, pids, await job_b.result()

    race_id, status_b, outcome_a, running, pids, outcome_b = run(scenario())
    assert status_b.source is Source.JOINED and status_b.solve_id != race_id
    assert outcome_a.verdict is Verdict.CANCELLED and outcome_a.source is Source.RACE
    assert outcome_a.cancel_reason is not None
    assert (outcome_a.cancel_reason.cause, outcome_a.cancel_reason.message) == (
        CancelCause.CLIENT,
        "a has seen enough",
    )
    assert running.state is SolveState.RUNNING and len(pids) == 2
    assert outcome_b.verdict is Verdict.CANCELLED and outcome_b.source is Source.JOINED
    assert outcome_b.cancel_reason is not None and outcome_b.cancel_reason.message == "b too"
    for attempt in outcome_b.attempts:
        assert attempt.stop is not None and attempt.stop.reason.message == "b too"
    assert len(attempts_started(server)) == 2  # one set of provers for both callers
    assert server.prover_pids() == []
    assert server.metric("proofrace_race_joins_total") == 1
    assert server.metric(
        "proofrace_preemption_latency_seconds_count", reason="client", prover="cadical"
    ) == 1  # fmt: skip


JOINER_THAT_DIES = textwrap.dedent(
    """
    import asyncio, sys
    import capnp
    from proofrace.client import Client

    async def main():
        async with Client.connect(sys.argv[1]) as client:
            job = await client.solve(open(sys.argv[2]).read(), provers=["cadical", "minisat"])
            print((await job.status()).solve_id, flush=True)
            sys.stdin.readline()  # killed while it waits here
    asyncio.run(capnp.run(main()))
    """
)


def test_a_joiner_that_dies_or_times_out_leaves_the_race_running(cached_server, run) -> None:
    server = cached_server

    async def scenario():
        async with Client.connect(server.address) as owner:
            job = await owner.solve(HARD, provers=SAT, time_limit=60)
            race_id = (await job.status()).solve_id
            async with Client.connect(server.address) as brief:
                short = await brief.solve(HARD, provers=SAT, time_limit=0.5)
                timed_out = await short.result()
            joiner = subprocess.Popen(
                [sys.executable, "-c", JOINER_THAT_DIES, server.address, str(HARD_FILE)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert joiner.stdout is not None
            gone_id = joiner.stdout.readline().strip()
            joiner.kill()
            joiner.wait()
            left = server.wait_event(event="solve.left", solve_id=gone_id)
            # A joiner that drops its token leaves too, with its own cause. (Waited for on a
            # thread: the client's loop must run for the release to leave.)
            async with Client.connect(server.address) as dropping:
                dropped = await dropping.solve(HARD, provers=SAT)
                dropped_id = (await dropped.status()).solve_id
                dropped.release()
                released = await asyncio.to_thread(
                    server.wait_event, event="solve.left", solve_id=dropped_id
                )
            still = await job.status()
            await job.cancel("owner done")
            return race_id, timed_out, left, released, still, await job.result()

    race_id, timed_out, left, released, still, owned = run(scenario())
    assert timed_out.verdict is Verdict.TIMEOUT and timed_out.deadline_ms == 500
    assert left["cause"] == "disconnected" and left["race"] == race_id
    assert released["cause"] == "tokenDropped" and released["race"] == race_id
    assert still.state is SolveState.RUNNING
    assert owned.cancel_reason is not None and owned.cancel_reason.message == "owner done"
    assert owned.deadline_ms == 60_000
    assert len(attempts_started(server)) == 2
    assert server.metric("proofrace_race_joins_total") == 3


def test_two_dispatchers_share_a_redis_store(tmp_path: Path, run) -> None:
    for name in ("redis", "one", "two"):
        (tmp_path / name).mkdir()

    async def solve(server: RunningServer):
        async with Client.connect(server.address) as client:
            return await (await client.solve(EASY, provers=["z3", "cvc5"])).result()

    with redis_server(tmp_path / "redis") as url:
        env = {**SERVER_ENV, "PROOFRACE_CACHE": "redis", "PROOFRACE_CACHE_URL": url}
        with (
            running_server(server_args(tmp_path / "one"), env) as one,
            running_server(server_args(tmp_path / "two"), env) as two,
        ):
            raced = run(solve(one))
            one.wait_event(event="cache.stored", solve_id=raced.solve_id)
            hit = run(solve(two))
            assert raced.source is Source.RACE
            assert hit.source is Source.CACHE and hit.cached is not None
            assert hit.cached.solve_id == raced.solve_id
            assert two.events(event="attempt.started") == []
            assert two.metric("proofrace_cache_hits_total") == 1
            assert one.metric("proofrace_cache_misses_total") == 1
