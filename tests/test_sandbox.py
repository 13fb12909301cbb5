"""The prover sandbox, attacked through problem text: writing outside the attempt directory,
probing and reading files, opening network sockets, signalling other processes. Each test
checks the attack failed, that nothing was left behind, and that honest solves still work.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERVER_ENV, server_args

from proofrace.backends.sandbox import SYSTEM_PATHS, make_jail
from proofrace.backends.spawn import Limits, spawn
from proofrace.client import AttemptOutcome, Client, Format, Verdict

from harness import SAMPLES, RunningServer, running_server

EASY = (SAMPLES / "distinct.smt2").read_text()
SAT = "(declare-const x Int)\n(assert (> x 2))\n(check-sat)\n"


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("confined")
    with running_server(server_args(tmp), SERVER_ENV) as server:
        yield server


def solve(run, server: RunningServer, text: str, provers: list[str]):  # type: ignore[no-untyped-def]
    async def scenario():  # type: ignore[no-untyped-def]
        async with Client.connect(server.address) as client:
            job = await client.solve(text, provers=provers, time_limit=60, format=Format.SMTLIB2)
            return await job.result()

    return run(scenario())


def output_of(outcome, prover: str) -> str:  # type: ignore[no-untyped-def]
    return next(a for a in outcome.attempts if a.prover == prover).output_tail


def run_launched(line: list[str], cwd: Path, limits: Limits) -> tuple[int | None, bytes]:
    """Start a launcher's command line as the server does, read all it writes, reap it."""
    child = spawn(line, cwd=cwd, env=dict(os.environ), limits=limits, launched=True)
    output = b""
    while chunk := os.read(child.output, 4096):
        output += chunk
    child.close_output()
    child.wait()
    return child.returncode, output


def test_z3_cannot_write_outside_its_directory(confined: RunningServer, tmp_path: Path, run):
    target = tmp_path / "escape.pth"
    problem = f'(set-option :regular-output-channel "{target}")\n{SAT}'
    outcome = solve(run, confined, problem, ["z3"])
    assert not target.exists()
    assert "failed to set output stream" in output_of(outcome, "z3")
    # The honest answer still comes: the same server, the next solve.
    assert solve(run, confined, EASY, ["z3", "cvc5"]).verdict is Verdict.PROVED


def test_include_cannot_tell_whether_a_file_exists(confined: RunningServer, tmp_path: Path, run):
    present = tmp_path / "present.smt2"
    present.write_text("(declare-const leaked Int)\n")
    absent = tmp_path / "missing.smt2"  # a name of the same length
    answers = [
        output_of(solve(run, confined, f'(include "{path}")\n{SAT}', ["z3"]), "z3")
        for path in (present, absent)
    ]
    # Both read the same, once the path itself is taken out: nothing tells them apart.
    assert answers[0].replace(str(present), "P") == answers[1].replace(str(absent), "P")
    assert "failed to open file" in answers[0]


def attack(run, server: RunningServer, lines: list[str]) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    outcome = solve(run, server, "\n".join(lines) + "\n", ["attacker"])
    assert outcome.verdict is Verdict.REFUTED, outcome  # the stub ran to its end
    said: dict[str, list[str]] = {}
    for line in output_of(outcome, "attacker").splitlines():
        verb, _, result = line.partition(" ")
        said.setdefault(verb, []).append(result)
    return said


def test_a_prover_opens_no_socket_and_signals_nothing(
    confined: RunningServer, tmp_path: Path, run
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    listener.settimeout(0.5)

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept)
    thread.start()
    unix_path = tmp_path / "s.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(unix_path))
    unix.listen()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    secret = tmp_path / "secret"
    secret.write_text("not for provers")
    outside = tmp_path / "written"
    try:
        said = attack(
            run,
            confined,
            [
                f"connect 127.0.0.1 {port}",
                "udp 127.0.0.1 9",
                f"unix {unix_path}",
                f"kill {victim.pid}",
                f"kill {confined.pid}",
                f"write {outside}",
                f"read {secret}",
                "read /proc/1/environ",
                "limits",
            ],
        )
        thread.join()
        verbs = ("connect", "udp", "unix", "kill", "write", "read")
        assert all(r.startswith("blocked") for verb in verbs for r in said[verb]), said
        assert len(said["kill"]) == len(said["read"]) == 2
        assert accepted == [] and not outside.exists()
        assert victim.poll() is None and confined.process.poll() is None
        assert said["limits"][0].startswith("cpu=61 ")  # in force from the first instruction
    finally:
        victim.kill()
        victim.wait()
        listener.close()
        unix.close()
        for sock in accepted:
            sock.close()
    assert solve(run, confined, EASY, ["z3"]).verdict is Verdict.PROVED


def test_turning_the_sandbox_off_is_explicit_and_logged(tmp_path: Path, run) -> None:
    env = {**SERVER_ENV, "PROOFRACE_SANDBOX": "false"}
    with running_server(server_args(tmp_path), env) as server:
        warning = server.wait_for_event(lambda e: e["event"] == "server.sandbox_off")
        assert warning["level"] == "warning"
        outside = tmp_path / "written"
        said = attack(run, server, [f"write {outside}", "limits"])
        assert said["write"] == ["ok"] and outside.exists()  # what the sandbox prevents
        assert said["limits"][0].startswith("cpu=61 ")  # the launcher still sets the rlimits


def test_a_missing_sandbox_stops_the_server_rather_than_run_unconfined(tmp_path: Path) -> None:
    env = {**SERVER_ENV, "PROOFRACE_SANDBOX_LAUNCHER": str(tmp_path / "nowhere")}
    serve = subprocess.run(
        [sys.executable, "-m", "proofrace.cli.main", "serve", *server_args(tmp_path)],
        env={**os.environ, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert serve.returncode == 1
    assert "sandbox = false" in serve.stderr


def test_a_stopped_prover_in_the_sandbox_is_still_reaped(confined: RunningServer, run) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        async with Client.connect(confined.address) as client:
            job = await client.solve(EASY, provers=["z3", "think"])
            return await job.result()

    outcome = run(scenario())
    assert outcome.verdict is Verdict.PROVED
    think = next(a for a in outcome.attempts if a.prover == "think")
    assert think.stop is not None and think.exit.signal in (signal.SIGTERM, signal.SIGKILL)


def test_a_prover_the_launcher_cannot_start_is_a_system_error(tmp_path: Path, run) -> None:
    """Its exec fails inside the launcher, after the spawn: still not the prover's error."""
    broken = tmp_path / "broken-prover"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    registry = tmp_path / "broken.toml"
    registry.write_text(
        f'[broken]\ncommand = ["{broken}", "{{input}}"]\nformats = ["smtlib2"]\n'
        "default = false\nrules = [['^unsat$', \"proved\"]]\n"
    )
    args = ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--provers-file", str(registry)]
    with running_server(args, SERVER_ENV) as server:
        outcome = solve(run, server, EASY, ["broken"])
    (attempt,) = outcome.attempts
    assert attempt.outcome is AttemptOutcome.SYSTEM_ERROR, attempt
    assert attempt.message.startswith(f"could not start: cannot execute {broken}")


def test_a_prover_starts_in_its_directory_with_no_descriptor_but_its_three(
    tmp_path: Path,
) -> None:
    """The launcher enters the attempt's directory and closes whatever else was inherited: a
    descriptor the server left inheritable by mistake never reaches a prover. (Landlock hides
    /proc/self/fd from a confined prover, so this looks through the launcher's rlimits-only
    mode, which closes descriptors all the same.)"""
    jail, _abi = make_jail(False, "", [], [])
    assert jail is not None
    limits = Limits(cpu_seconds=10, memory_bytes=0, file_bytes=0, grace_seconds=0.2)
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        line = jail.command(["sh", "-c", "ls /proc/$$/fd; pwd"], tmp_path, limits)
        returncode, output = run_launched(line, tmp_path, limits)
    finally:
        os.close(inherited)
    assert returncode == 0
    assert output.decode().split() == ["0", "1", "2", str(tmp_path)]


def test_a_prover_starts_with_every_signal_at_its_default_and_none_blocked(
    tmp_path: Path,
) -> None:
    """The server ignores SIGPIPE and SIGXFSZ (Python does); a prover must not inherit that,
    or a file over its size limit fails a write instead of ending it. (Through the launcher's
    rlimits-only mode, for the same reason as above.)"""
    jail, _abi = make_jail(False, "", [], [])
    assert jail is not None
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN  # this very process
    limits = Limits(cpu_seconds=10, memory_bytes=0, file_bytes=0, grace_seconds=0.2)
    line = jail.command(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], tmp_path, limits)
    _returncode, output = run_launched(line, tmp_path, limits)
    masks = dict(line.split(":") for line in output.decode().split("\n") if line)
    ignored, blocked = int(masks["SigIgn"], 16), int(masks["SigBlk"], 16)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGINT):
        assert not ignored & (1 << (signum - 1)), signal.Signals(signum).name
    assert blocked == 0


def test_a_launcher_that_cannot_be_run_is_an_error_and_leaves_no_descriptor(
    tmp_path: Path,
) -> None:
    limits = Limits(cpu_seconds=10, memory_bytes=0, file_bytes=0, grace_seconds=0.2)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        spawn([str(tmp_path / "no-launcher"), "--", "true"], cwd=tmp_path, env={}, limits=limits,
              launched=True)  # fmt: skip
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_a_prover_writing_past_its_file_size_limit_is_ended_there(tmp_path: Path) -> None:
    """RLIMIT_FSIZE, set by the launcher: the write that would pass it ends the prover with
    SIGXFSZ, and the file stops at the limit."""
    jail, _abi = make_jail(True, "", [], [])
    assert jail is not None
    limit = 1024 * 1024
    limits = Limits(cpu_seconds=10, memory_bytes=0, file_bytes=limit, grace_seconds=0.2)
    writer = ["sh", "-c", "exec head -c 3000000 /dev/zero > big"]
    returncode, _output = run_launched(jail.command(writer, tmp_path, limits), tmp_path, limits)
    assert returncode == -signal.SIGXFSZ
    assert (tmp_path / "big").stat().st_size == limit


def test_each_system_path_is_one_rule_and_still_readable(tmp_path: Path) -> None:
    """The launcher adds a Landlock rule per `--ro` path (an open and four more system calls
    per prover): links are resolved and paths beneath another left out, so /bin, /lib and
    /etc/localtime on a merged-/usr system add no rule of their own. A confined prover still
    reads and runs from every system path, through its links."""
    jail, _abi = make_jail(True, "", [], [])
    assert jail is not None
    limits = Limits(cpu_seconds=10, memory_bytes=0, file_bytes=0, grace_seconds=0.2)
    present = [p for p in SYSTEM_PATHS if os.path.exists(p)]
    reads = " && ".join(
        f"ls {p} >/dev/null" if os.path.isdir(p) else f"head -c 1 {p} >/dev/null" for p in present
    )
    line = jail.command(["sh", "-c", f"{reads} && /bin/true && echo readable"], tmp_path, limits)
    rules = [Path(line[i + 1]) for i, word in enumerate(line) if word == "--ro"]
    assert len(rules) == len(set(rules))
    assert not [(a, b) for a in rules for b in rules if a != b and a.is_relative_to(b)]
    assert all(
        any(Path(os.path.realpath(p)).is_relative_to(rule) for rule in rules) for p in present
    )
    assert run_launched(line, tmp_path, limits) == (0, b"readable\n")
    if os.path.islink("/bin"):  # merged /usr: one rule for /usr, /bin, /sbin, /lib, /lib64
        assert Path("/bin") not in rules and Path("/usr") in rules
