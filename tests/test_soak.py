"""Many solves with cancels at random moments leave nothing behind. (The full-size run, with
figures, is bench/soak.py.)"""

from __future__ import annotations

from tests.support.soak import SoakProblems, soak

from harness import SAMPLES, RunningServer

PROBLEMS = SoakProblems(
    easy_smt=(SAMPLES / "distinct.smt2").read_text(),
    medium_cnf=(SAMPLES / "pigeonhole-6.cnf").read_text(),
    hard_cnf=(SAMPLES / "pigeonhole-12.cnf").read_text(),
)
SOLVES = 200


def wait_idle(server: RunningServer, connections: int) -> None:
    """Every connection so far closed, every solve finished."""
    server.wait_for_events(lambda e: e["event"] == "connection.closed", connections)
    started = sum(1 for e in server.log_events() if e["event"] == "solve.started")
    server.wait_for_events(lambda e: e["event"] == "solve.finished", started)


def test_random_cancels_leak_no_process_fd_tempdir_or_memory(
    own_server: RunningServer, run
) -> None:
    server = own_server
    run(soak(server.address, PROBLEMS, 16, seed=1))  # warm up: imports, caches, allocator pools
    wait_idle(server, connections=1)
    fds, rss = server.fd_count(), server.rss_bytes()

    verdicts = run(soak(server.address, PROBLEMS, SOLVES, seed=2))
    wait_idle(server, connections=2)

    assert len(verdicts) == SOLVES
    assert "proved" in verdicts and "cancelled" in verdicts
    assert server.prover_pids() == []
    assert server.fd_count() == fds
    assert list(server.temp_root().iterdir()) == []
    growth = server.rss_bytes() - rss
    assert growth < 32 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert server.metric("proofrace_attempts_in_flight") == 0
    assert server.metric("proofrace_solves_in_flight") == 0
