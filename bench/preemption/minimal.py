"""A minimal pycapnp racing server: the RPC floor for bench/core.py.

It speaks enough of proofrace's schema for the Python client and the benchmark (`solve`,
the token's `cancel`, `result` and `status`, `ping`, `provers`), and does only this: writes
the problem to a file, spawns the named provers (own session, output on a pipe), reaps each
from its pidfd's readiness callback, and on a decisive answer, a cancel or a dropped token
SIGKILLs every group still running. No sandbox, no limits, no logs, no metrics, no checks.
What proofrace costs above it is the price of everything else it does.

Run as `python -m bench.preemption.minimal REGISTRY.toml`: prints `ready PORT` once it
listens on 127.0.0.1; its provers carry PROOFRACE_OWNER=<pid>- as the service's do.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

import capnp

from proofrace import schema
from proofrace.backends.registry import Registry
from proofrace.backends.verdicts import Finding, OutputScanner
from proofrace.core.formats import FILE_SUFFIX, detect
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    AttemptStatus,
    CancelCause,
    CancelReason,
    Format,
    SolveOutcome,
    SolveState,
    SolveStatus,
    Strategy,
    Verdict,
)
from proofrace.wire import convert

_schema = schema.load()
_ids = itertools.count()
_DECISIVE = {Finding.PROVED: Verdict.PROVED, Finding.REFUTED: Verdict.REFUTED}


class Attempt:
    def __init__(self, prover: str, argv: list[str], workdir: Path, race: MiniRace) -> None:
        self.prover, self.race = prover, race
        self.scanner = OutputScanner(race.registry.specs[prover].rules, 4096)
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env={"PATH": os.environ["PATH"], "PROOFRACE_OWNER": f"{os.getpid()}-{prover}"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pidfd = os.pidfd_open(self.proc.pid)
        self.killed = False
        self.returncode: int | None = None
        asyncio.get_running_loop().add_reader(self.pidfd, self.on_exit)

    def kill(self) -> None:
        if self.returncode is None and not self.killed:
            self.killed = True
            os.killpg(self.proc.pid, signal.SIGKILL)

    def on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pidfd)
        reaped = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)
        assert reaped is not None  # it blocks until the exit, which the readiness said came
        self.returncode = reaped.si_status
        self.proc.returncode = self.returncode
        os.close(self.pidfd)
        assert self.proc.stdout is not None
        self.scanner.feed(self.proc.stdout.read())
        self.proc.stdout.close()
        self.race.ended(self)

    def result(self) -> AttemptResult:
        answer = self.scanner.answer
        if self.killed and (answer is None or answer.finding not in _DECISIVE):
            return AttemptResult(self.prover, AttemptOutcome.CANCELLED)
        if answer is not None and answer.finding is Finding.PROVED:
            return AttemptResult(self.prover, AttemptOutcome.PROVED, Answer.PROVED, answer.line)
        said = Answer.REFUTED if answer and answer.finding is Finding.REFUTED else Answer.NONE
        return AttemptResult(self.prover, AttemptOutcome.NO_PROOF_FOUND, said)


class MiniRace:
    def __init__(self, registry: Registry, request: Any, root: Path) -> None:
        self.registry = registry
        self.solve_id = f"m{next(_ids)}"
        self.done: asyncio.Future[SolveOutcome] = asyncio.get_running_loop().create_future()
        self.reason: CancelReason | None = None
        self.winner: Attempt | None = None
        content = bytes(request.content)
        self.format = detect(content) or Format.DIMACS
        self.workdir = Path(tempfile.mkdtemp(dir=root))
        problem = self.workdir / ("problem" + FILE_SUFFIX[self.format])
        problem.write_bytes(content)
        self.attempts = [
            Attempt(str(p), registry.specs[str(p)].argv(str(problem)), self.workdir, self)
            for p in request.provers
        ]

    def cancel(self, reason: CancelReason) -> None:
        if self.reason is None and self.winner is None and not self.done.done():
            self.reason = reason
            for attempt in self.attempts:
                attempt.kill()

    def ended(self, attempt: Attempt) -> None:
        answer = attempt.scanner.answer
        if self.winner is None and self.reason is None and answer and answer.finding in _DECISIVE:
            self.winner = attempt
            for other in self.attempts:
                other.kill()
        if all(a.returncode is not None for a in self.attempts):
            for entry in self.workdir.iterdir():
                entry.unlink()
            self.workdir.rmdir()
            self.done.set_result(self.outcome())

    def outcome(self) -> SolveOutcome:
        winner = self.winner
        verdict = Verdict.CANCELLED if self.reason else Verdict.UNKNOWN
        if winner is not None and winner.scanner.answer is not None:
            verdict = _DECISIVE[winner.scanner.answer.finding]
        return SolveOutcome(
            self.solve_id, "", verdict, Strategy.FIRST_WINS, self.format,
            tuple(a.result() for a in self.attempts),
            winner=winner.prover if winner else "", cancel_reason=self.reason,
        )  # fmt: skip

    def status(self) -> SolveStatus:
        def state(a: Attempt) -> AttemptState:
            if a.returncode is not None:
                return AttemptState.FINISHED
            return AttemptState.STOPPING if a.killed else AttemptState.RUNNING

        return SolveStatus(
            self.solve_id,
            SolveState.FINISHED if self.done.done() else SolveState.RUNNING,
            self.reason, self.winner.prover if self.winner else "", 0,
            tuple(AttemptStatus(a.prover, state(a), None, 0, 0) for a in self.attempts),
        )  # fmt: skip


def _dropped(race: MiniRace) -> None:
    race.cancel(CancelReason(CancelCause.TOKEN_DROPPED, "dropped"))


class Token(_schema.CancelToken.Server):  # type: ignore[misc,name-defined]
    def __init__(self, race: MiniRace) -> None:
        self.race = race
        weakref.finalize(self, _dropped, race)

    async def cancel(self, reason: str, _context: Any, **kwargs: Any) -> None:
        self.race.cancel(CancelReason(CancelCause.CLIENT, reason or "cancelled"))
        convert.write_status(_context.results.init("status"), self.race.status())

    async def result(self, _context: Any, **kwargs: Any) -> None:
        outcome = await asyncio.shield(self.race.done)
        convert.write_outcome(_context.results.init("outcome"), outcome)

    async def status(self, _context: Any, **kwargs: Any) -> None:
        convert.write_status(_context.results.init("status"), self.race.status())


class Dispatcher(_schema.Dispatcher.Server):  # type: ignore[misc,name-defined]
    def __init__(self, registry: Registry, root: Path) -> None:
        self.registry, self.root = registry, root

    async def solve(self, request: Any, _context: Any, **kwargs: Any) -> None:
        _context.results.token = Token(MiniRace(self.registry, request, self.root))

    async def ping(self, _context: Any, **kwargs: Any) -> None:
        _context.results.idleTimeoutMs = 0

    async def provers(self, _context: Any, **kwargs: Any) -> None:
        _context.results.init("provers", 0)


async def serve(registry: Registry) -> None:
    with tempfile.TemporaryDirectory(prefix="minimal-") as root:

        async def accept(stream: Any) -> None:
            bootstrap = Dispatcher(registry, Path(root))
            await capnp.TwoPartyServer(stream, bootstrap=bootstrap).on_disconnect()

        # Stopped with SIGTERM, told by the event loop (an exception raised from a Python
        # signal handler can land in a finalizer, which swallows it): the server closes and
        # the scratch root goes with it.
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        server = await capnp.AsyncIoStream.create_server(accept, "127.0.0.1", 0)
        print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await stop.wait()


def main() -> None:
    registry = Registry.load([Path(sys.argv[1])])
    asyncio.run(capnp.run(serve(registry)))


if __name__ == "__main__":
    main()
