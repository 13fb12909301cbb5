"""Access control and limits: TLS, mutual TLS, the login gate, timeouts, and refusals that are
clear values, never hangs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import capnp
import pytest
from conftest import SERVER_ENV, WORKER_SECRET, server_args

from proofrace.client import Client, ErrorKind, LoginRefused, LoginRequired, Verdict

from harness import REPO, SAMPLES, RunningServer, running_server, wait_gone

EASY = (SAMPLES / "distinct.smt2").read_text()
HARD_FILE = "pigeonhole-12.cnf"
HARD = (SAMPLES / HARD_FILE).read_text()
SECRET = "correct horse battery staple"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, all from that CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


def client_tls(pki: Path, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_certificate:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


async def provers_count(address: str, **connect: object) -> int:
    async with Client.connect(address, **connect) as client:  # type: ignore[arg-type]
        return len(await client.provers())


def test_tls_serves_clients_that_trust_it_and_no_others(tmp_path: Path, pki: Path, run) -> None:
    env = {
        **SERVER_ENV,
        "PROOFRACE_TLS_CERT": str(pki / "server.pem"),
        "PROOFRACE_TLS_KEY": str(pki / "server.key"),
    }
    with running_server(server_args(tmp_path), env) as server:
        assert run(provers_count(server.address, tls=client_tls(pki, False))) >= 6
        with pytest.raises(ssl.SSLError):  # a client that does not know the CA
            run(provers_count(server.address, tls=ssl.create_default_context()))
        with pytest.raises(capnp.KjException):  # plain Cap'n Proto on a TLS port
            run(asyncio.wait_for(provers_count(server.address), 10))
        assert server.process.poll() is None


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, pki: Path, run) -> None:
    env = {
        **SERVER_ENV,
        "PROOFRACE_TLS_CERT": str(pki / "server.pem"),
        "PROOFRACE_TLS_KEY": str(pki / "server.key"),
        "PROOFRACE_TLS_CLIENT_CA": str(pki / "ca.pem"),
    }
    with running_server(server_args(tmp_path), env) as server:
        assert run(provers_count(server.address, tls=client_tls(pki, True))) >= 6
        with pytest.raises((ssl.SSLError, capnp.KjException, ConnectionError)):
            run(asyncio.wait_for(provers_count(server.address, tls=client_tls(pki, False)), 10))


@pytest.fixture
def gated(tmp_path: Path) -> RunningServer:
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    env = {
        **SERVER_ENV,
        "PROOFRACE_AUTH_SECRET_FILE": str(secret),
        "PROOFRACE_LOGIN_TIMEOUT_S": "1",
    }
    with running_server(server_args(tmp_path), env) as server:
        yield server


def test_the_gate_lets_in_only_the_right_credential(gated: RunningServer, run) -> None:
    assert run(provers_count(gated.address, credential=SECRET)) >= 6
    with pytest.raises(LoginRefused, match="the credential was refused"):
        run(provers_count(gated.address, credential="wrong"))
    with pytest.raises(LoginRequired):
        run(provers_count(gated.address))
    gated.wait_for_event(lambda e: e["event"] == "connection.login_refused")


def test_before_login_nothing_but_login_is_reachable(gated: RunningServer, run) -> None:
    async def scenario() -> str:
        stream = await capnp.AsyncIoStream.create_connection(gated.host, gated.port)
        rpc = capnp.TwoPartyClient(stream)
        from proofrace import schema

        dispatcher = rpc.bootstrap().cast_as(schema.load().Dispatcher)
        try:
            await dispatcher.provers()
        except capnp.KjException as error:
            return str(error)
        finally:
            rpc.close()
        return "no error"

    message = run(scenario())
    assert "not implemented" in message.lower()
    assert "Traceback" not in message and ".py" not in message


def test_a_peer_that_never_logs_in_is_dropped(gated: RunningServer) -> None:
    with socket.create_connection((gated.host, gated.port)) as idle:
        idle.settimeout(20)
        assert idle.recv(1) == b""  # closed by the server after the login timeout
    gated.wait_for_event(lambda e: e["event"] == "connection.login_timeout")


def test_repeated_failed_logins_close_the_connection(gated: RunningServer, run) -> None:
    async def scenario() -> list[str]:
        stream = await capnp.AsyncIoStream.create_connection(gated.host, gated.port)
        rpc = capnp.TwoPartyClient(stream)
        from proofrace import schema

        gate = rpc.bootstrap().cast_as(schema.load().Gate)
        answers = []
        try:
            for _ in range(5):
                answers.append((await gate.login("guess")).result.which())
        except capnp.KjException:
            answers.append("closed")
        finally:
            rpc.close()
        return answers

    assert run(scenario()) == ["refused", "refused", "refused", "closed"]
    gated.wait_for_event(lambda e: e["event"] == "connection.dropped")


def test_too_many_solves_are_refused_as_overloaded(tmp_path: Path, run) -> None:
    env = {**SERVER_ENV, "PROOFRACE_MAX_SOLVES_PER_CONNECTION": "2", "PROOFRACE_MAX_SOLVES": "3"}
    with running_server(server_args(tmp_path), env) as server:

        async def scenario():
            async with (
                Client.connect(server.address) as first,
                Client.connect(server.address) as second,
            ):
                jobs = [await first.solve(HARD, provers=["think"]) for _ in range(3)]
                third_on_first = await jobs[2].result()
                more = [await second.solve(HARD, provers=["think"]) for _ in range(2)]
                beyond_total = await more[1].result()
                for job in [*jobs[:2], more[0]]:
                    await job.cancel("done")
                return third_on_first, beyond_total

        per_connection, in_total = run(scenario())
        assert per_connection.error is not None
        assert per_connection.error.kind is ErrorKind.OVERLOADED
        assert "on this connection" in per_connection.error.message
        assert in_total.error is not None and in_total.error.kind is ErrorKind.OVERLOADED
        assert "retry later" in in_total.error.message


def test_too_many_attempts_in_one_solve_are_refused(tmp_path: Path, run) -> None:
    env = {**SERVER_ENV, "PROOFRACE_MAX_ATTEMPTS_PER_SOLVE": "1"}
    with running_server(server_args(tmp_path), env) as server:

        async def scenario():
            async with Client.connect(server.address) as client:
                return await (await client.solve(EASY, provers=["z3", "cvc5"])).result()

        outcome = run(scenario())
        assert outcome.error is not None and outcome.error.kind is ErrorKind.INVALID_REQUEST
        assert "at most 1 per solve" in outcome.error.message


FROZEN_CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    import capnp
    from proofrace.client import Client

    async def main():
        async with Client.connect(sys.argv[1]) as client:
            job = await client.solve(open(sys.argv[2]).read(), provers=["cadical"])
            print((await job.status()).solve_id, flush=True)
            await job.result()
    asyncio.run(capnp.run(main()))
    """
)


def test_a_frozen_client_is_noticed_and_its_solves_cancelled(tmp_path: Path) -> None:
    env = {**SERVER_ENV, "PROOFRACE_IDLE_TIMEOUT_S": "1.5"}
    with running_server(server_args(tmp_path), env) as server:
        client = subprocess.Popen(
            [sys.executable, "-c", FROZEN_CLIENT, server.address, str(SAMPLES / HARD_FILE)],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            assert client.stdout is not None
            solve_id = client.stdout.readline().strip()
            started = server.wait_for_event(
                lambda e: e["event"] == "attempt.started" and e["solve_id"] == solve_id
            )
            # While it lives, its pings keep it connected past the idle timeout.
            server.wait_for_events(lambda e: e["event"] == "connection.opened", 1)
            client.send_signal(signal.SIGSTOP)  # frozen: socket open, silent
            finished = server.solve_finished(solve_id, timeout=30)
            assert finished["cause"] == "disconnected"
            server.wait_for_event(lambda e: e["event"] == "connection.idle_timeout")
            assert wait_gone([started["pid"]]) == []
        finally:
            client.kill()
            client.wait()


def test_the_local_default_is_a_private_unix_socket(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**SERVER_ENV, "XDG_RUNTIME_DIR": str(runtime)}
    args = ["--metrics", "127.0.0.1:0"]
    with running_server(args, env) as server:
        path = runtime / "proofrace" / "proofrace.sock"
        assert server.unix == f"unix:{path}" and server.address == ""
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        cli = subprocess.run(
            [sys.executable, "-m", "proofrace.cli.main", "provers"],
            env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
            capture_output=True, text=True, check=False, cwd=REPO,
        )  # fmt: skip
        assert cli.returncode == 0 and "z3" in cli.stdout


def test_plain_tcp_beyond_loopback_is_refused_unless_asked_for(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "proofrace.cli.main", "serve", "--listen", "0.0.0.0:0"]
    refused = subprocess.run(serve, capture_output=True, text=True, check=False, timeout=30)
    assert refused.returncode == 2
    assert "refusing plain TCP on 0.0.0.0:0" in refused.stderr
    with running_server(
        [*server_args(tmp_path), "--listen", "0.0.0.0:0"],
        {**SERVER_ENV, "PROOFRACE_INSECURE_TCP": "true"},
    ) as server:
        assert server.process.poll() is None


def test_errors_name_what_was_refused_without_internals(server: RunningServer, run) -> None:
    async def scenario():
        async with Client.connect(server.address) as client:
            return await (await client.solve(b"\xff\xfe garbage \x00")).result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.ERROR and outcome.error is not None
    assert "/" not in outcome.error.message and "Traceback" not in outcome.error.message


def test_a_worker_joins_a_dispatcher_behind_tls_and_a_login(tmp_path: Path, pki: Path, run) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    worker_secret = tmp_path / "worker-secret"
    worker_secret.write_text(WORKER_SECRET)
    worker_secret.chmod(0o600)
    env = {
        **SERVER_ENV,
        "PROOFRACE_TLS_CERT": str(pki / "server.pem"),
        "PROOFRACE_TLS_KEY": str(pki / "server.key"),
        "PROOFRACE_AUTH_SECRET_FILE": str(secret),
        "PROOFRACE_WORKER_SECRET_FILE": str(worker_secret),
    }
    worker_args = [
        "--metrics", "127.0.0.1:0", "--name", "remote", "--slots", "1",
        "--credential-file", str(worker_secret), "--dispatcher-ca", str(pki / "ca.pem"),
    ]  # fmt: skip
    with (
        running_server(server_args(tmp_path, "--local-slots", "0"), env) as dispatcher,
        running_server(
            [*worker_args, "--dispatcher", dispatcher.address], SERVER_ENV, command="worker"
        ),
    ):
        dispatcher.wait_for_event(lambda e: e["event"] == "worker.registered")

        async def scenario():
            async with Client.connect(
                dispatcher.address, credential=SECRET, tls=client_tls(pki, False)
            ) as client:
                return await (await client.solve(EASY, provers=["z3"])).result()

        assert run(scenario()).verdict is Verdict.PROVED
