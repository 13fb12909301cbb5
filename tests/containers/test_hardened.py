"""The hardened setup of docs/deploy.md in containers: a dispatcher that speaks only TLS and
requires a login, and workers that reach it with the CA and the secret mounted as files."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from proofrace.client import AttemptOutcome, Client, Strategy, Verdict

from .nodes import REPO, cluster

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
