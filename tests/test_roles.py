"""Roles: solving and serving as a worker are different rights.

Each test is an attack a caller on the network could try: registering a fake worker with a
client's credential, forging verdicts under another prover's name, advertising new or huge
prover names, claiming endless slots, flooding registrations, or using a listening worker
directly. Each checks that the attack fails and that honest clients are still served right.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import capnp
import pytest
from conftest import SERVER_ENV, WORKER_ENV, WORKER_SECRET, server_args

from proofrace import schema
from proofrace.client import Client, Verdict

from harness import SAMPLES, RunningServer, running_server

_schema = schema.load()
SAT = "(declare-const x Int)\n(assert (> x 2))\n(check-sat)\n"  # satisfiable: refuted
EASY = (SAMPLES / "distinct.smt2").read_text()
LONG_NAME = "p" * 4000
SECRET = "the clients' own login secret"


class FakeWorker(_schema.Worker.Server):  # type: ignore[misc,name-defined]
    """A rogue worker: it answers `proved` to everything, under a prover name of its choice."""

    def __init__(self, offered: list[str], slots: int, says: str = "cvc5") -> None:
        self.offered = offered
        self.slots = slots
        self.says = says
        self.runs = 0

    async def info(self, _context: Any, **kwargs: Any) -> None:
        write_info(_context.results.init("info"), self.offered, self.slots)

    async def run(self, attempt: Any, events: Any, _context: Any, **kwargs: Any) -> None:
        self.runs += 1
        result = _context.results.init("result")
        result.prover = self.says
        result.outcome = "proved"
        result.answer = "proved"
        result.status = "unsat " + "x" * 100_000
        result.message = "m" * 100_000

    async def stop(self, attemptId: str, reason: Any, _context: Any, **kwargs: Any) -> None:
        pass


def write_info(builder: Any, offered: list[str], slots: int) -> None:
    builder.name = "rogue"
    builder.slots = slots
    provers = builder.init("provers", len(offered))
    for i, name in enumerate(offered):
        provers[i].name = name
        provers[i].version = "9.9"
        provers[i].available = True
        formats = provers[i].init("formats", 1)
        formats[0] = "smtlib2"


async def register(
    server: RunningServer, worker: FakeWorker, credential: str | None, via: str = "login"
) -> tuple[Any, Any, Any]:
    """(rpc, response, login answer): registering `worker` as an attacker would."""
    stream = await capnp.AsyncIoStream.create_connection(server.host, server.port)
    rpc = capnp.TwoPartyClient(stream)
    bootstrap = rpc.bootstrap()
    login = None
    target = bootstrap.cast_as(_schema.Dispatcher)
    if credential is not None:
        login = (await bootstrap.cast_as(_schema.Gate).login(credential)).result
        target = getattr(login, login.which())
    request = target.registerWorker_request()
    request.worker = worker
    write_info(request.init("info"), worker.offered, worker.slots)
    return rpc, await request.send(), login


def refusal(response: Any) -> str:
    return str(response.refused.kind) if response._has("refused") else "registered"


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[RunningServer]:
    """A dispatcher that runs z3 and cvc5 itself and knows a worker credential."""
    with running_server(server_args(tmp_path), WORKER_ENV) as server:
        yield server


def test_a_client_cannot_register_a_worker(dispatcher: RunningServer, run) -> None:
    async def scenario() -> tuple[str, str, Verdict, str, list[str]]:
        fake = FakeWorker(["z3", "cvc5", "cadical", "eprover"], 65535)
        rpc, response, _ = await register(dispatcher, fake, None)
        rpc2, response2, login = await register(dispatcher, fake, "any client credential")
        try:
            async with Client.connect(dispatcher.address) as client:
                outcome = await (await client.solve(SAT, provers=["z3", "cvc5"])).result()
                names = [p.name for p in await client.provers()]
            return refusal(response), refusal(response2), outcome.verdict, login.which(), names
        finally:
            rpc.close()
            rpc2.close()

    direct, after_login, verdict, role, names = run(scenario())
    assert direct == "forbidden" and after_login == "forbidden"
    assert role == "dispatcher"  # a client's login never opens the worker side
    assert verdict is Verdict.REFUTED  # answered by the real provers, not the fake
    assert names.count("z3") == 1
    assert not [e for e in dispatcher.log.all() if e["event"] == "worker.registered"]


def test_a_client_credential_never_grants_registration(tmp_path: Path, run) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    env = {**WORKER_ENV, "PROOFRACE_AUTH_SECRET_FILE": str(secret)}
    with running_server(server_args(tmp_path), env) as server:

        async def scenario() -> tuple[str, str, str, str]:
            fake = FakeWorker(["z3"], 1)
            rpc, response, login = await register(server, fake, SECRET)
            rpc2, response2, login2 = await register(server, fake, WORKER_SECRET)
            rpc.close()
            rpc2.close()
            return login.which(), refusal(response), login2.which(), refusal(response2)

        client_role, client_try, worker_role, worker_try = run(scenario())
        assert (client_role, client_try) == ("dispatcher", "forbidden")
        assert (worker_role, worker_try) == ("workerHub", "registered")


def test_a_worker_cannot_forge_names_defaults_or_slots(tmp_path: Path, run) -> None:
    """Even with the worker credential: an answer counts under the prover the dispatcher
    asked for, unknown names never reach the catalogue, metrics or logs, slots are clamped."""
    env = {**WORKER_ENV, "PROOFRACE_MAX_WORKER_SLOTS": "3"}
    with running_server(server_args(tmp_path, "--local-slots", "0"), env) as server:

        async def scenario() -> tuple[str, Any, list[str], int]:
            fake = FakeWorker(["z3", "brand-new", LONG_NAME], 65535, says="cvc5")
            rpc, response, _ = await register(server, fake, WORKER_SECRET)
            try:
                assert refusal(response) == "registered"
                async with Client.connect(server.address) as client:
                    outcome = await (await client.solve(SAT, provers=["z3"])).result()
                    default = await (await client.solve(SAT)).result()
                    names = [p.name for p in await client.provers()]
                return outcome.winner, outcome, names, fake.runs, default
            finally:
                rpc.close()

        winner, outcome, names, runs, default = run(scenario())
        # The forged answer is still the worker's word (that is what the credential is for),
        # but under the name the dispatcher asked for, with its text bounded.
        assert runs >= 1 and winner == "z3"
        assert [a.prover for a in outcome.attempts] == ["z3"]
        assert len(outcome.attempts[0].status) < 300 and len(outcome.attempts[0].message) < 1100
        assert "brand-new" not in names and LONG_NAME not in names
        assert {a.prover for a in default.attempts} <= {"z3", "cvc5"}
        registered = server.wait_for_event(lambda e: e["event"] == "worker.registered")
        assert registered["slots"] == 3 and registered["provers"] == ["z3"]
        assert registered["ignored"] == 2
        metrics = server.metrics_text()
        assert "brand-new" not in metrics and LONG_NAME not in metrics and "cvc5" not in metrics
        long = [line[:300] for line in server.log.tail(1000) if len(line) >= 4000]  # it sent 100 KB
        assert not long, long


def test_a_worker_offering_nothing_known_is_refused(dispatcher: RunningServer, run) -> None:
    async def scenario() -> str:
        rpc, response, _ = await register(dispatcher, FakeWorker(["brand-new"], 1), WORKER_SECRET)
        rpc.close()
        return refusal(response)

    assert run(scenario()) == "invalidRequest"


def test_registrations_are_capped(tmp_path: Path, run) -> None:
    env = {**WORKER_ENV, "PROOFRACE_MAX_WORKERS": "2"}
    with running_server(server_args(tmp_path), env) as server:

        async def scenario() -> list[str]:
            held, answers = [], []
            for _ in range(4):
                rpc, response, _ = await register(server, FakeWorker(["z3"], 1), WORKER_SECRET)
                held.append((rpc, response))  # a registration lasts while it is held
                answers.append(refusal(response))
            async with Client.connect(server.address) as client:
                assert len(await client.provers()) >= 6
            for rpc, _ in held:
                rpc.close()
            return answers

        assert run(scenario()) == ["registered", "registered", "overloaded", "overloaded"]


def test_open_registration_is_an_explicit_choice(tmp_path: Path, run) -> None:
    env = {**SERVER_ENV, "PROOFRACE_OPEN_REGISTRATION": "true"}
    with running_server(server_args(tmp_path), env) as server:
        server.wait_for_event(lambda e: e["event"] == "server.open_registration")

        async def scenario() -> str:
            rpc, response, _ = await register(server, FakeWorker(["z3"], 1), None)
            rpc.close()
            return refusal(response)

        assert run(scenario()) == "registered"


def worker_registry(tmp: Path) -> str:
    return next(a for a in server_args(tmp) if a.endswith(".toml"))


def test_a_listening_worker_sits_behind_the_gate_and_clamps_deadlines(tmp_path: Path, run) -> None:
    env = {**WORKER_ENV, "PROOFRACE_MAX_TIMEOUT_S": "1"}
    args = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--slots", "1",
            "--provers-file", worker_registry(tmp_path)]  # fmt: skip
    with running_server(args, env, command="worker") as worker:

        async def scenario() -> tuple[str, str, str, Any]:
            stream = await capnp.AsyncIoStream.create_connection(worker.host, worker.port)
            rpc = capnp.TwoPartyClient(stream)
            try:
                bare = rpc.bootstrap().cast_as(_schema.Worker)
                try:
                    await bare.info()
                    direct = "reachable"
                except capnp.KjException:
                    direct = "unreachable"
                gate = rpc.bootstrap().cast_as(_schema.Gate)
                wrong = (await gate.login("a guess")).result.which()
                login = (await gate.login(WORKER_SECRET)).result
                request = login.worker.run_request()
                attempt = request.init("attempt")
                attempt.prover = "think"
                attempt.content = b"p cnf 1 1\n1 0\n"
                attempt.format = "dimacs"
                attempt.timeoutMs = 2**32 - 1  # fifty days
                attempt.attemptId = attempt.solveId = "x"
                request.events = Events()
                result = (await asyncio.wait_for(request.send(), 30)).result
                return direct, wrong, login.which(), str(result.outcome)
            finally:
                rpc.close()

        direct, wrong, role, outcome = run(scenario())
        assert direct == "unreachable" and wrong == "refused" and role == "worker"
        assert outcome == "timeout"  # the worker's own maximum (1 s), not fifty days


class Events(_schema.AttemptEvents.Server):  # type: ignore[misc,name-defined]
    async def started(self, pid: int, _context: Any, **kwargs: Any) -> None:
        pass

    async def ended(self, result: Any, _context: Any, **kwargs: Any) -> None:
        pass


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA; a certificate for 127.0.0.1 (servers); client certificates for a worker (OU
    `workers`) and for an ordinary client (OU `clients`)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    for name, subject in (
        ("server", "/CN=server"), ("worker", "/OU=workers/CN=w1"), ("client", "/OU=clients/CN=c")
    ):  # fmt: skip
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    return d


def tls_env(pki: Path) -> dict[str, str]:
    return {
        **SERVER_ENV,
        "PROOFRACE_TLS_CERT": str(pki / "server.pem"),
        "PROOFRACE_TLS_KEY": str(pki / "server.key"),
        "PROOFRACE_TLS_CLIENT_CA": str(pki / "ca.pem"),
        "PROOFRACE_TLS_WORKER_OU": "workers",
    }


def test_a_worker_certificate_grants_the_worker_role(tmp_path: Path, pki: Path, run) -> None:
    """Under mutual TLS, a worker proves its role by its certificate alone; a client's
    certificate from the same CA still cannot register."""
    worker_args = [
        "--metrics", "127.0.0.1:0", "--name", "certified", "--slots", "1",
        "--provers-file", worker_registry(tmp_path), "--dispatcher-ca", str(pki / "ca.pem"),
    ]  # fmt: skip
    worker_env = {
        **SERVER_ENV,
        "PROOFRACE_CLIENT_CERT": str(pki / "worker.pem"),
        "PROOFRACE_CLIENT_KEY": str(pki / "worker.key"),
    }
    with (
        running_server(server_args(tmp_path, "--local-slots", "0"), tls_env(pki)) as dispatcher,
        running_server(
            [*worker_args, "--dispatcher", dispatcher.address], worker_env, command="worker"
        ),
    ):
        dispatcher.wait_for_event(lambda e: e["event"] == "worker.registered")

        async def scenario() -> tuple[Verdict, str]:
            import ssl

            context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
            async with Client.connect(dispatcher.address, tls=context) as client:
                outcome = await (await client.solve(EASY, provers=["z3"])).result()
            stream = await capnp.AsyncIoStream.create_connection(
                dispatcher.host, dispatcher.port, ssl=context, server_hostname="127.0.0.1"
            )
            rpc = capnp.TwoPartyClient(stream)
            try:
                request = rpc.bootstrap().cast_as(_schema.Dispatcher).registerWorker_request()
                request.worker = FakeWorker(["z3"], 1)
                write_info(request.init("info"), ["z3"], 1)
                return outcome.verdict, refusal(await request.send())
            finally:
                rpc.close()

        verdict, client_try = run(scenario())
        assert verdict is Verdict.PROVED and client_try == "forbidden"


def test_a_dispatcher_dials_its_workers_with_tls_and_the_credential(
    tmp_path: Path, pki: Path, run
) -> None:
    worker_env = {
        **WORKER_ENV,
        "PROOFRACE_TLS_CERT": str(pki / "server.pem"),
        "PROOFRACE_TLS_KEY": str(pki / "server.key"),
    }
    args = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--slots", "1",
            "--name", "listed", "--provers-file", worker_registry(tmp_path)]  # fmt: skip
    with running_server(args, worker_env, command="worker") as worker:
        dispatcher_env = {**WORKER_ENV, "PROOFRACE_WORKERS_CA": str(pki / "ca.pem")}
        with running_server(
            server_args(tmp_path, "--local-slots", "0", "--worker", worker.address),
            dispatcher_env,
        ) as dispatcher:
            dispatcher.wait_for_event(lambda e: e["event"] == "worker.registered")
            worker.wait_for_event(
                lambda e: e["event"] == "connection.login" and e["role"] == "dispatcher"
            )

            async def scenario() -> Verdict:
                async with Client.connect(dispatcher.address) as client:
                    return (await (await client.solve(EASY, provers=["z3"])).result()).verdict

            assert run(scenario()) is Verdict.PROVED
