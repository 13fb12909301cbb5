"""The local socket and the secret, attacked by another user of the same machine: a socket
directory planted (or swappable) by them, an impostor behind the socket, a secret file they
can read. The tests run as root and play the other user with a second uid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from conftest import SERVER_ENV, server_args

from proofrace.client import Client
from proofrace.client.address import NotTheServer

from harness import REPO, running_server

OTHER_UID = 54321


def serve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proofrace.cli.main", "serve", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
        cwd=REPO,
    )  # fmt: skip


def test_a_socket_directory_another_user_controls_is_refused(tmp_path: Path) -> None:
    """The attacker owns a directory above the socket: they could rename the service's own
    directory away and put theirs, with their socket, in its place."""
    planted = tmp_path / "proofrace-1000"
    planted.mkdir(mode=0o755)
    os.chown(planted, OTHER_UID, OTHER_UID)
    socket_path = planted / "proofrace" / "proofrace.sock"
    refused = serve(["--unix", str(socket_path), "--metrics", ""], SERVER_ENV)
    assert refused.returncode == 1
    assert f"{planted} belongs to another user" in refused.stderr
    assert not (planted / "proofrace").exists()


def test_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone may rename what is inside
    refused = serve(["--unix", str(shared / "p" / "s.sock"), "--metrics", ""], SERVER_ENV)
    assert refused.returncode == 1 and "is writable by others" in refused.stderr


def test_a_sticky_shared_directory_is_fine(tmp_path: Path, run) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: each user can rename only what is theirs
    path = sticky / "proofrace-0" / "proofrace.sock"
    with running_server(["--unix", str(path), "--metrics", "127.0.0.1:0"], SERVER_ENV) as server:

        async def count() -> int:
            async with Client.connect(f"unix:{path}") as client:
                return len(await client.provers())

        assert server.unix == f"unix:{path}" and run(count()) >= 6


IMPOSTOR = textwrap.dedent(
    """
    import socket, sys
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sys.argv[1])
    server.listen()
    print("listening", flush=True)
    peer, _ = server.accept()
    peer.settimeout(5)
    try:
        got = peer.recv(65536)
    except OSError:
        got = b""
    print(f"received {len(got)}", flush=True)
    """
)


def test_the_client_sends_nothing_to_an_impostor(tmp_path: Path, run) -> None:
    """Another user's process behind the socket path (after swapping the directory, say):
    the client checks the peer's uid before anything, its credential included, goes out."""
    # Somewhere the other user can reach (pytest's own directory is root's alone).
    home = Path(tempfile.mkdtemp(prefix="proofrace-impostor-"))
    home.chmod(0o755)
    os.chown(home, OTHER_UID, OTHER_UID)
    path = home / "proofrace.sock"
    impostor = subprocess.Popen(
        ["/usr/bin/python3", "-c", IMPOSTOR, str(path)],
        user=OTHER_UID, group=OTHER_UID, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline().strip() == "listening"

        async def connect() -> None:
            async with Client.connect(f"unix:{path}", credential="the service's secret"):
                pass

        with pytest.raises(NotTheServer, match=f"uid {OTHER_UID}"):
            run(connect())
        assert impostor.stdout.readline().strip() == "received 0"
    finally:
        impostor.kill()
        impostor.wait()
        shutil.rmtree(home, ignore_errors=True)


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a secret that is not one any more")
    secret.chmod(0o644)
    env = {**SERVER_ENV, "PROOFRACE_AUTH_SECRET_FILE": str(secret)}
    refused = serve(server_args(tmp_path), env)
    assert refused.returncode == 2
    assert "is open to others (mode 644)" in refused.stderr
    secret.chmod(0o600)
    with running_server(server_args(tmp_path), env) as server:
        assert server.process.poll() is None
