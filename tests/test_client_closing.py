"""The Python client closes what it opens, seen from the server: every way of leaving a
connection (`async with`, `close()`, the blocking helpers, garbage collection, the command
line, a refused login) ends it while the client's process lives on. The server logs
`connection.closed`, its connection gauge drops, and solves still running end `disconnected`.

Each test waits for the server while the client's loop keeps running (in a thread, for the
blocking waits), so a close that only happens when the loop or the process ends would fail.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV, server_args

from proofrace.cli.main import main as proofrace_cli
from proofrace.client import Client, ClientClosed, Job, LoginRefused, SolveState, Verdict, sync

from harness import SAMPLES, RunningServer, readiness, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()


def opened_count(server: RunningServer) -> int:
    return len(server.events(event="connection.opened"))


async def newest_connection(server: RunningServer, before: int) -> int:
    """The id of the connection opened after `before` others (one client at a time here)."""
    events = await asyncio.to_thread(
        server.wait_for_events, lambda e: e["event"] == "connection.opened", before + 1
    )
    return int(events[-1]["connection"])


async def closed_on_server(server: RunningServer, connection: int) -> float:
    """Waits for the server to log that connection closed; returns its connection gauge."""
    await asyncio.to_thread(server.wait_event, event="connection.closed", connection=connection)
    return server.metric("proofrace_connections")


async def running_solve(client: Client) -> tuple[Job, str]:
    """A solve whose prover never ends on its own, once that prover is running."""
    with readiness("think") as ready:
        job = await client.solve(HARD, provers=["think"])
        solve_id = (await job.status()).solve_id
        await asyncio.to_thread(ready)
    return job, solve_id


@pytest.fixture
def no_unclosed_warnings() -> Iterator[None]:
    """Fails the test if a client was left for the garbage collector to close."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [str(w.message) for w in seen if "proofrace client" in str(w.message)]
    assert unclosed == []


def test_leaving_async_with_closes_the_connection_at_once(
    server: RunningServer, run, no_unclosed_warnings: None
) -> None:
    async def scenario() -> tuple[str, float]:
        before = opened_count(server)
        async with Client.connect(server.address) as client:
            connection = await newest_connection(server, before)
            job, solve_id = await running_solve(client)
        gauge = await closed_on_server(server, connection)
        del job
        return solve_id, gauge

    solve_id, gauge = run(scenario())
    assert gauge == 0
    assert server.solve_finished(solve_id)["cause"] == "disconnected"
    assert server.prover_pids() == []


def test_close_ends_the_connection_and_later_use_raises_client_closed(
    server: RunningServer, run, no_unclosed_warnings: None
) -> None:
    async def scenario() -> tuple[str, float]:
        before = opened_count(server)
        client = await Client.connect(server.address)
        connection = await newest_connection(server, before)
        job, solve_id = await running_solve(client)
        waiting = asyncio.ensure_future(job.result())  # a call cut short by the close
        await client.close()
        gauge = await closed_on_server(server, connection)
        with pytest.raises(ClientClosed):
            await waiting
        await client.close()  # idempotent
        assert client.closed
        with pytest.raises(ClientClosed):
            await client.provers()
        with pytest.raises(ClientClosed):
            await client.solve(EASY)
        with pytest.raises(ClientClosed):
            await job.status()
        with pytest.raises(ClientClosed):
            await job.cancel()
        async with job:  # leaving a job's scope after the close raises nothing
            pass
        with pytest.raises(ClientClosed):
            async with client:
                pass
        return solve_id, gauge

    solve_id, gauge = run(scenario())
    assert gauge == 0
    assert server.solve_finished(solve_id)["cause"] == "disconnected"


def test_the_blocking_helpers_close_their_connection(
    server: RunningServer, no_unclosed_warnings: None
) -> None:
    before = opened_count(server)
    assert {p.name for p in sync.provers(server.address)} >= {"z3"}
    outcome = sync.solve(server.address, EASY, provers=["z3"])
    assert outcome.verdict is Verdict.PROVED
    closed = server.wait_for_events(
        lambda e: e["event"] == "connection.closed" and e["connection"] > before, 2
    )
    assert len(closed) == 2
    assert server.metric("proofrace_connections") == 0


def test_a_client_collected_open_warns_and_closes(server: RunningServer, run) -> None:
    async def scenario() -> tuple[str, float]:
        before = opened_count(server)
        client = await Client.connect(server.address)
        connection = await newest_connection(server, before)
        job, solve_id = await running_solve(client)
        del client
        gc.collect()
        # A job keeps its client's connection: it still answers.
        assert (await job.status()).state is SolveState.RUNNING
        with pytest.warns(ResourceWarning, match="unclosed <proofrace client connection to "):
            del job
            gc.collect()
        return solve_id, await closed_on_server(server, connection)

    solve_id, gauge = run(scenario())
    assert gauge == 0
    # The job's token goes with it, just before the connection: either ends the solve.
    assert server.solve_finished(solve_id)["cause"] in ("tokenDropped", "disconnected")
    assert server.prover_pids() == []


def test_the_command_line_closes_its_connections(
    server: RunningServer, capsys: pytest.CaptureFixture[str], no_unclosed_warnings: None
) -> None:
    before = opened_count(server)
    assert proofrace_cli(["provers", "--addr", server.address]) == 0
    assert proofrace_cli(["solve", str(SAMPLES / "distinct.smt2"), "--addr", server.address]) == 0
    assert "verdict: proved" in capsys.readouterr().out
    closed = server.wait_for_events(
        lambda e: e["event"] == "connection.closed" and e["connection"] > before, 2
    )
    assert len(closed) == 2
    assert server.metric("proofrace_connections") == 0


def test_a_refused_login_closes_its_connection(
    tmp_path: Path, run, no_unclosed_warnings: None
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a long enough shared secret\n")
    secret.chmod(0o600)  # one others can read is refused
    env = {**SERVER_ENV, "PROOFRACE_AUTH_SECRET_FILE": str(secret)}
    with running_server(server_args(tmp_path), env) as server:

        async def scenario() -> float:
            with pytest.raises(LoginRefused):
                await Client.connect(server.address, credential="wrong")
            return await closed_on_server(server, 1)

        assert run(scenario()) == 0
        assert server.events(event="connection.dropped") == []  # the client left on its own


def self_signed(directory: Path) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 in `directory`, and a client context that trusts it."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(directory / "server.key"), "-out", str(directory / "server.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return ssl.create_default_context(cafile=str(directory / "server.pem"))


@pytest.mark.parametrize("transport", ["unix", "tls"])
def test_other_transports_close_at_once_too(
    transport: str, tmp_path: Path, run, no_unclosed_warnings: None
) -> None:
    socket_path = tmp_path / "run" / "proofrace.sock"
    tls, env, extra = None, SERVER_ENV, ["--unix", str(socket_path)]
    if transport == "tls":
        tls, extra = self_signed(tmp_path), []
        env = {
            **SERVER_ENV,
            "PROOFRACE_TLS_CERT": str(tmp_path / "server.pem"),
            "PROOFRACE_TLS_KEY": str(tmp_path / "server.key"),
        }
    with running_server(server_args(tmp_path, *extra), env) as server:
        address = f"unix:{socket_path}" if transport == "unix" else server.address

        async def scenario() -> tuple[str, float]:
            async with Client.connect(address, tls=tls) as client:
                connection = await newest_connection(server, 0)
                job, solve_id = await running_solve(client)
            gauge = await closed_on_server(server, connection)
            del job
            return solve_id, gauge

        solve_id, gauge = run(scenario())
        assert gauge == 0
        assert server.solve_finished(solve_id)["cause"] == "disconnected"


def test_connecting_and_closing_leaves_no_descriptor_behind(server: RunningServer, run) -> None:
    async def scenario() -> tuple[int, int]:
        async with Client.connect(server.address) as client:
            await client.provers()  # the schema is loaded and the loop set up
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            async with Client.connect(server.address) as client:
                job = await client.solve(EASY, provers=["z3"])
                assert (await job.status()).state in (SolveState.RUNNING, SolveState.FINISHED)
        return before, len(os.listdir("/proc/self/fd"))

    before, after = run(scenario())
    assert after == before


def test_nothing_touches_the_descriptor_after_close(server: RunningServer, run) -> None:
    """The closed socket's descriptor number is taken by a new socket pair at once; whatever
    pycapnp does afterwards (releasing the job's token, tearing down its loop) must neither
    write to it nor close it."""

    def descriptors() -> set[int]:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}

    async def scenario() -> tuple[socket.socket, socket.socket]:
        async with Client.connect(server.address) as warm:
            await warm.provers()
        before = descriptors()
        client = await Client.connect(server.address)
        job = await client.solve(EASY, provers=["z3"])
        await job.status()
        [used] = descriptors() - before
        await client.close()
        mine, other = socket.socketpair()
        assert used in (mine.fileno(), other.fileno())
        del job, client
        gc.collect()
        async with Client.connect(server.address) as later:  # more turns of both loops
            await later.provers()
        return mine, other

    mine, other = run(scenario())  # pycapnp's loop is torn down here
    with mine, other:
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.recv(1)  # nothing was written to either end
        mine.sendall(b"still mine")
        assert other.recv(64) == b"still mine"
