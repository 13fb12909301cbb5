"""Back-pressure and peer limits, attacked: the reader that never reads, the waiter flood,
unfinished messages, the connection flood, the hog, oversized text and the password guesser
who reconnects. Each attack ends in a value or a closed connection; the server's memory stays
bounded (its RSS is printed for the record), and an honest client is still served.

Attackers connect from 127.0.0.2 and honest clients from 127.0.0.1: per-address limits must
hold the one without touching the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import capnp
import pytest
from conftest import SERVER_ENV, server_args

from proofrace import schema
from proofrace.client import Client, ErrorKind, Verdict
from proofrace.core.model import Format, SolveRequest
from proofrace.wire import convert

from harness import SAMPLES, RunningServer, running_server

_schema = schema.load()
EASY = (SAMPLES / "distinct.smt2").read_text()
HARD = (SAMPLES / "pigeonhole-12.cnf").read_text()
ATTACKER = "127.0.0.2"


def rss_mib(server: RunningServer) -> float:
    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def from_attacker(server: RunningServer) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ATTACKER, 0))
    sock.connect((server.host, server.port))
    return sock


async def rpc_from(server: RunningServer, sock: socket.socket | None = None) -> Any:
    sock = sock or from_attacker(server)
    stream = await capnp.AsyncIoStream.create_connection(sock=sock)
    return capnp.TwoPartyClient(stream)


def solve_request(dispatcher: Any, text: str, provers: list[str], goal_id: str = "") -> Any:
    request = dispatcher.solve_request()
    convert.write_request(
        request.init("request"),
        SolveRequest(text.encode(), goal_id, Format.AUTO, tuple(provers)),
    )
    return request


async def honest_solve(server: RunningServer) -> Verdict:
    async with Client.connect(server.address) as client:
        job = await client.solve(EASY, provers=["z3"])
        return (await job.result()).verdict


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Reads until the server closes (True) or `timeout` passes with the socket open."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[RunningServer]:
    env = {
        **SERVER_ENV,
        "PROOFRACE_FIRST_MESSAGE_S": "2",
        "PROOFRACE_MESSAGE_S": "2",
        "PROOFRACE_WRITE_STALL_S": "5",
        "PROOFRACE_MAX_ANSWERS_UNREAD": "256",
    }
    with running_server(server_args(tmp_path), env) as server:
        yield server


class DeafProxy:
    """Forwards a client's bytes to the server and never reads the server's answers: a peer
    that does not read, seen from the server."""

    def __init__(self, server: RunningServer) -> None:
        self._server = server
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.upstream: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client, _ = self._listener.accept()
        self.upstream = from_attacker(self._server)
        self.upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                self.upstream.sendall(data)

    def close(self) -> None:
        self._listener.close()
        if self.upstream is not None:
            self.upstream.close()


def test_a_reader_that_never_reads_is_dropped_and_memory_stays_bounded(
    limited: RunningServer, run
) -> None:
    before = rss_mib(limited)
    proxy = DeafProxy(limited)

    async def flood() -> dict[str, Any]:
        host, _, port = proxy.address.rpartition(":")
        stream = await capnp.AsyncIoStream.create_connection(host, int(port))
        rpc = capnp.TwoPartyClient(stream)
        dispatcher = rpc.bootstrap().cast_as(_schema.Dispatcher)
        # Each answer lists every prover: answers pile up unread on the server's side.
        pending = []
        for _ in range(20):
            pending += [dispatcher.provers() for _ in range(1000)]
            # The attack's pace, not a wait: 1,000 calls per 50 ms. Sent all at once, the
            # server would drop the peer for a stalled message before any answer piled up.
            await asyncio.sleep(0.05)
        # Open until the server drops it, as such a peer would stay.
        event = await asyncio.to_thread(
            limited.wait_for_event,
            lambda e: e["event"] in ("connection.dropped", "connection.write_stalled"),
            30,
        )
        rpc.close()
        del pending
        return event

    try:
        dropped = run(flood())
        peak = rss_mib(limited)
    finally:
        proxy.close()
    assert dropped["peer"].startswith(ATTACKER)
    assert run(honest_solve(limited)) is Verdict.PROVED
    after = rss_mib(limited)
    print(f"\nnever-reader: RSS {before:.1f} MiB before, {peak:.1f} at drop, {after:.1f} after")
    assert peak - before < 150  # unbounded, this flood held well over 300 MiB


def test_result_waiters_per_token_are_bounded(limited: RunningServer, run) -> None:
    async def flood() -> str:
        rpc = await rpc_from(limited)
        dispatcher = rpc.bootstrap().cast_as(_schema.Dispatcher)
        token = solve_request(dispatcher, HARD, ["think"]).send().token
        await token.status()
        waiters = [token.result() for _ in range(20_000)]
        try:
            await asyncio.wait_for(asyncio.gather(*waiters), 30)
        except capnp.KjException as error:
            return "closed" if "disconnect" in str(error).lower() else str(error)[:200]
        finally:
            rpc.close()
        return "answered"

    assert run(flood()) == "closed"
    event = limited.wait_for_event(lambda e: e["event"] == "connection.dropped")
    assert event["exceeded"] == "result() calls waiting on one token"
    assert run(honest_solve(limited)) is Verdict.PROVED


def test_an_unfinished_message_and_a_silent_peer_are_dropped(limited: RunningServer) -> None:
    before = rss_mib(limited)
    unfinished = []
    for _ in range(8):
        sock = from_attacker(limited)
        # One segment of 1 Mi words (8 MiB): Cap'n Proto reserves it at once; 16 bytes follow.
        sock.sendall(struct.pack("<II", 0, 1 << 20) + b"\0" * 16)
        unfinished.append(sock)
    silent = from_attacker(limited)
    try:
        assert all(closed_by_server(sock, 20) for sock in unfinished)
        assert closed_by_server(silent, 20)
    finally:
        for sock in [*unfinished, silent]:
            sock.close()
    # Each of the nine was dropped for its unfinished (here: first) message.
    limited.wait_for_events(
        lambda e: e["event"] in ("connection.message_timeout", "connection.first_message_timeout"),
        9,
    )
    print(f"\nunfinished frames: RSS {before:.1f} MiB before, {rss_mib(limited):.1f} after")


def test_a_connection_flood_leaves_room_for_others(tmp_path: Path, run) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    env = {**SERVER_ENV, "PROOFRACE_MAX_CONNECTIONS_PER_ADDRESS": "64"}
    flood: list[socket.socket] = []
    try:
        with running_server(server_args(tmp_path), env) as server:
            before = rss_mib(server)
            for _ in range(1100):
                flood.append(from_attacker(server))
            assert run(asyncio.wait_for(honest_solve(server), 30)) is Verdict.PROVED
            refused = server.wait_for_events(
                lambda e: e["event"] == "connection.refused", 1100 - 64
            )
            assert all(e["why"].endswith("its limit") for e in refused)
            print(f"\nconnection flood: RSS {before:.1f} MiB before, {rss_mib(server):.1f} during")
    finally:
        for sock in flood:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_one_caller_cannot_take_every_solve(tmp_path: Path, run) -> None:
    env = {
        **SERVER_ENV,
        "PROOFRACE_MAX_SOLVES": "8",
        "PROOFRACE_MAX_SOLVES_PER_IDENTITY": "4",
    }
    with running_server(server_args(tmp_path), env) as server:

        async def hog_then_honest() -> tuple[list[str], Verdict]:
            rpcs = [await rpc_from(server) for _ in range(3)]
            answers = []
            tokens = []
            for rpc in rpcs:
                dispatcher = rpc.bootstrap().cast_as(_schema.Dispatcher)
                for _ in range(4):
                    token = solve_request(dispatcher, HARD, ["think"]).send().token
                    tokens.append(token)
                    status = (await token.status()).status
                    answers.append(str(status.state))
            verdict = await honest_solve(server)
            for rpc in rpcs:
                rpc.close()
            return answers, verdict

        answers, verdict = run(hog_then_honest())
        assert answers.count("running") == 4  # its share, whatever the connections
        assert verdict is Verdict.PROVED
        refused = server.wait_for_events(lambda e: e["event"] == "solve.refused", 8)
        assert all("for this caller" in str(e.get("message", e)) for e in refused)


def test_text_fields_are_capped(limited: RunningServer, run) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with Client.connect(limited.address) as client:
            job = await client.solve(EASY, provers=["z3"], goal_id="g" * 2_000_000)
            long_goal = await job.result()
            running = await client.solve(HARD, provers=["think"])
            await running.cancel("r" * 1_000_000)
            return long_goal, await running.result()

    long_goal, cancelled = run(scenario())
    assert long_goal.error is not None and long_goal.error.kind is ErrorKind.INVALID_REQUEST
    assert "goalId is longer than 256" in long_goal.error.message
    assert len(long_goal.goal_id) < 100
    assert cancelled.cancel_reason is not None
    assert len(cancelled.cancel_reason.message) <= 1030
    assert all(len(line) < 20_000 for line in limited.log.tail(200))


def test_a_guesser_that_reconnects_is_held_back_per_address(tmp_path: Path, run) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the right credential, at last")
    secret.chmod(0o600)
    env = {
        **SERVER_ENV,
        "PROOFRACE_AUTH_SECRET_FILE": str(secret),
        "PROOFRACE_MAX_FAILED_LOGINS_PER_ADDRESS": "4",
        "PROOFRACE_LOGIN_BACKOFF_S": "60",
    }
    with running_server(server_args(tmp_path), env) as server:

        async def login(credential: str, sock: socket.socket | None = None) -> str:
            rpc = await rpc_from(server, sock)
            try:
                gate = rpc.bootstrap().cast_as(_schema.Gate)
                return str((await gate.login(credential)).result.which())
            except capnp.KjException:
                return "closed"
            finally:
                rpc.close()

        async def scenario() -> tuple[list[str], str, str]:
            guesses = [await login(f"guess {i}") for i in range(6)]
            right_from_attacker = await login("the right credential, at last")
            elsewhere = socket.create_connection((server.host, server.port))
            right_elsewhere = await login("the right credential, at last", elsewhere)
            return guesses, right_from_attacker, right_elsewhere

        guesses, blocked, elsewhere = run(scenario())
        assert guesses[:4] == ["refused"] * 4 and set(guesses[4:]) <= {"refused", "closed"}
        assert blocked in ("refused", "closed")  # even the right one, for the back-off
        assert elsewhere == "dispatcher"
