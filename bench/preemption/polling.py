"""The echidna host's preemption today, reimplemented fairly: one worker thread per attempt runs
its prover as a subprocess (in its own process group) and, every 100 ms, looks at a shared
cancel flag; once the flag is up it sends SIGKILL to the group and reaps the process.

The flag is raised by the caller (a cancel) or by the first worker whose prover answered
decisively (first success). Workers are started at different moments, so their polling phases
are spread over the interval, as the host's tasks would be.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

POLL_S = 0.100

# A prover's argv, and how to tell from its output that it answered decisively.
Command = tuple[list[str], Callable[[bytes], bool]]


@dataclass
class _Worker:
    argv: list[str]
    decisive: Callable[[bytes], bool]
    process: subprocess.Popen[bytes] | None = None
    output: bytes = b""
    finished_by_itself: bool = False
    reaped_ns: int = 0
    started: threading.Event = field(default_factory=threading.Event)


class PollingRace:
    """Runs `commands` as racing attempts; `flag_raised_ns` and `reaped_ns` tell the latency."""

    def __init__(self, commands: Sequence[Command]) -> None:
        self._flag = threading.Event()  # read only by polling it, never waited on
        self._flag_lock = threading.Lock()
        self.flag_raised_ns = 0
        self.winner: int | None = None
        self._workers = [_Worker(argv, decisive) for argv, decisive in commands]
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True)
            for i in range(len(self._workers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        for worker in self._workers:
            worker.started.wait()

    def raise_flag(self) -> bool:
        """Returns False if the flag was already up (the first cause wins)."""
        with self._flag_lock:
            if self._flag.is_set():
                return False
            self.flag_raised_ns = time.monotonic_ns()
            self._flag.set()
            return True

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    @property
    def reaped_ns(self) -> list[int]:
        return [w.reaped_ns for w in self._workers]

    def stopped(self) -> list[int]:
        """The attempts that were killed (not those that finished by themselves)."""
        return [i for i, w in enumerate(self._workers) if not w.finished_by_itself]

    def _work(self, index: int) -> None:
        worker = self._workers[index]
        worker.process = process = subprocess.Popen(
            worker.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker.started.set()
        # The output is drained by its own thread, so a chatty prover never blocks on a pipe.
        chunks: list[bytes] = []
        drain = threading.Thread(target=lambda: chunks.extend(iter(_reader(process), b"")))
        drain.start()
        # The worker blocks on its prover (a finished prover is seen at once, as a task that
        # runs it would see it return) but looks at the flag only every POLL_S.
        exited = os.pidfd_open(process.pid)
        try:
            while not select.select([exited], [], [], POLL_S)[0]:
                if self._flag.is_set():
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    worker.reaped_ns = time.monotonic_ns()
                    drain.join()
                    return
        finally:
            os.close(exited)
        process.wait()
        drain.join()
        worker.output = b"".join(chunks)
        worker.finished_by_itself = True
        worker.reaped_ns = time.monotonic_ns()
        if worker.decisive(worker.output) and self.raise_flag():
            self.winner = index


def _reader(process: subprocess.Popen[bytes]) -> Callable[[], bytes]:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    return lambda: os.read(fd, 65536)


def cancel_trial(commands: Sequence[Command], delay_s: float) -> float:
    """Starts the race, raises the flag `delay_s` later (as a caller's cancel would), and
    returns the milliseconds from the flag until every process is reaped."""
    race = PollingRace(commands)
    race.start()
    time.sleep(delay_s)
    if not race.raise_flag():
        race.join()
        raise RuntimeError("an attempt finished before the cancel: pick a harder problem")
    race.join()
    return (max(race.reaped_ns) - race.flag_raised_ns) / 1e6


def first_success_trial(winner: Command, losers: Sequence[Command]) -> float | None:
    """Milliseconds from the winner's answer (the flag it raises) until the last loser is
    reaped; None when the race was not won by `winner` with every loser still running."""
    race = PollingRace([winner, *losers])
    race.start()
    race.join()
    if race.winner != 0 or race.stopped() != list(range(1, len(losers) + 1)):
        return None
    return (max(race.reaped_ns[1:]) - race.flag_raised_ns) / 1e6
