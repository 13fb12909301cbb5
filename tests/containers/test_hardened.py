"""The hardened setup of docs/deploy.md in containers: a dispatcher that speaks only TLS and
requires a login, and workers that reach it with the CA and the secret mounted as files; then
the same through docker-compose.hardened.yml, with material made by deploy/make-secrets.sh."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

from proofrace.client import AttemptOutcome, Client, Strategy, Verdict

from .compose import Compose
from .nodes import REPO, cluster, follow_logs, http_get, solve_hardened

SECRET = "a login secret for the container test"
EASY = (REPO / "samples" / "distinct.smt2").read_text()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(d: Path) -> Path:
    """A CA, and a certificate for the dispatcher under both names it is reached by: its
    network alias (from the workers) and loopback (from this host, through the published
    port)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dispatcher",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:dispatcher,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
            "-extfile", str(d / "server.ext"), "-out", str(d / "server.pem"))  # fmt: skip
    return d


def test_workers_join_a_dispatcher_behind_tls_and_a_login(tmp_path: Path, run) -> None:
    pki = make_pki(tmp_path)
    with cluster() as running:
        dispatcher = running.dispatcher(
            env={
                "PROOFRACE_LOCAL_SLOTS": "0",
                "PROOFRACE_INSECURE_TCP": "false",
                "PROOFRACE_TLS_CERT": "/run/proofrace/tls.crt",
                "PROOFRACE_TLS_KEY": "/run/proofrace/tls.key",
                # Files copied in are root's and world-readable, which a secret file may not
                # be: the clients' secret comes from the environment here.
                "PROOFRACE_AUTH_SECRET": SECRET,
            },
            files={
                "/run/proofrace/tls.crt": (pki / "server.pem").read_text(),
                "/run/proofrace/tls.key": (pki / "server.key").read_text(),
            },
        )
        # The workers log in with the workers' credential (set for every node by the cluster),
        # never the clients' secret.
        worker_env = {"PROOFRACE_DISPATCHER_CA": "/run/proofrace/ca.crt"}
        worker_files = {"/run/proofrace/ca.crt": (pki / "ca.pem").read_text()}
        workers = [running.worker(f"w{i}", env=worker_env, files=worker_files) for i in (1, 2)]
        dispatcher.wait_for("worker.registered", 2)

        async def solve():
            tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            async with Client.connect(running.address, credential=SECRET, tls=tls) as client:
                job = await client.solve(EASY, provers=["z3", "cvc5"], strategy=Strategy.ALL)
                return await job.result()

        outcome = run(solve())
        assert outcome.verdict is Verdict.PROVED
        assert all(a.outcome is AttemptOutcome.PROVED for a in outcome.attempts)
        assert [len(w.events("attempt.started")) for w in workers] == [1, 1]


def make_secrets(folder: Path) -> Path:
    """The material docs/deploy.md says to make, made the way it says."""
    subprocess.run([str(REPO / "deploy/make-secrets.sh"), str(folder)], check=True,
                   capture_output=True)  # fmt: skip
    return folder


def test_the_compose_hardened_override_runs_as_the_docs_say(tmp_path: Path, run) -> None:
    secrets = make_secrets(tmp_path / "secrets")
    compose = Compose(
        "docker-compose.hardened.yml",
        env={
            "PROOFRACE_SECRETS": str(secrets),
            "PROOFRACE_WORKER_SECRET": (secrets / "worker").read_text().strip(),
        },
    )
    compose("up", "-d", "--no-build", "--scale", "prometheus=0")
    try:
        (dispatcher,) = compose.containers("dispatcher")
        log, stream = follow_logs(dispatcher, "dispatcher")
        ready = log.wait_for(lambda e: e["event"] == "server.ready", 1, 60)[0]
        # The dispatcher says how callers get in.
        assert (ready["tls"], ready["login"], ready["insecure_tcp"]) == (True, True, False)
        log.wait_for(lambda e: e["event"] == "worker.registered", 2, 60)
        for worker in compose.containers("worker"):
            worker_log, worker_stream = follow_logs(worker, worker.name)
            worker_ready = worker_log.wait_for(lambda e: e["event"] == "worker.ready", 1, 30)
            assert (worker_ready[0]["tls"], worker_ready[0]["login"]) == (True, True)
            worker_stream.close()
        address = compose.address("dispatcher", 7340)
        outcome = run(solve_hardened(address, secrets, EASY))
        assert outcome.verdict is Verdict.PROVED
        assert all(a.worker for a in outcome.attempts)  # each names the worker that ran it
        # The client flags of docs/deploy.md; a plain client is told what is missing.
        cli = [sys.executable, "-m", "proofrace.cli.main"]
        flags = ["--tls-ca", str(secrets / "ca.crt"), "--credential-file", str(secrets / "login")]
        done = subprocess.run([*cli, "provers", "--addr", address, *flags], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = subprocess.run([*cli, "provers", "--addr", address], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 76 and "expects TLS" in done.stderr
        # What stays plain: /metrics and /healthz, HTTP without a login.
        metrics = compose.address("dispatcher", 7341)
        assert http_get(f"http://{metrics}/healthz")[0] == 200
        stream.close()
    finally:
        compose("down", "--volumes", "--timeout", "30")
