"""The local backend: each attempt is a prover process on this machine."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import signal
from dataclasses import dataclass, replace
from pathlib import Path

from proofrace.backends.base import not_started, stopped_outcome
from proofrace.backends.certify import CheckContext, certify, output_to_keep
from proofrace.backends.process import Limits, ProcessReport, off_loop, supervise
from proofrace.backends.registry import Registry
from proofrace.backends.sandbox import Jail, launch_failure
from proofrace.backends.verdicts import Finding, Match, OutputScanner
from proofrace.backends.watchdog import OrphanGuard
from proofrace.core.cancel import CancelScope
from proofrace.core.formats import FILE_SUFFIX
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    Exit,
    Problem,
    ProverInfo,
    Stop,
)
from proofrace.core.progress import AttemptProgress

# Names scratch directories uniquely inside the server's own private temporary root.
_SERIAL = itertools.count()


@dataclass(frozen=True)
class LocalSettings:
    memory_bytes: int = 8 * 1024**3
    file_bytes: int = 1024**3
    grace_seconds: float = 0.2
    output_tail_bytes: int = 16 * 1024
    jail: Jail | None = None  # None: no launcher; the parent sets the rlimits after exec


class LocalBackend:
    def __init__(
        self, registry: Registry, settings: LocalSettings, guard: OrphanGuard, temp_root: Path
    ) -> None:
        self._registry = registry
        self._settings = settings
        self._guard = guard
        self._temp_root = temp_root

    def catalog(self) -> list[ProverInfo]:
        return self._registry.info()

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        spec = self._registry.specs[prover]
        if scope.cancel_called:
            return not_started(prover, scope)
        # The scratch directory's name is fixed here; it is made, with the input file, on the
        # spawn thread just before the spawn, and removed off the loop too.
        workdir = self._temp_root / f"{prover}-{next(_SERIAL)}"
        input_name = "problem" + FILE_SUFFIX[problem.format]

        def prepare() -> None:
            workdir.mkdir(mode=0o700)
            (workdir / input_name).write_bytes(problem.content)

        try:
            scanner = OutputScanner(
                spec.rules, self._settings.output_tail_bytes, keep_bytes=output_to_keep(spec)
            )
            progress.output_bytes = lambda: scanner.total_bytes
            grace = self._settings.grace_seconds if spec.grace_s is None else spec.grace_s
            limits = Limits(
                cpu_seconds=math.ceil(timeout_s) + 1,
                memory_bytes=self._settings.memory_bytes,
                file_bytes=self._settings.file_bytes,
                grace_seconds=grace,
                stop_signal=spec.stop_signal,
            )
            launch = self._settings.jail.command if self._settings.jail else None
            try:
                report = await supervise(
                    spec.argv(input_name),
                    cwd=workdir,
                    env=self._environment(workdir),
                    limits=limits,
                    scope=scope,
                    output=scanner,
                    guard=self._guard,
                    on_spawn=progress.started,
                    on_stopping=progress.stopping,
                    prepare=prepare,
                    launch=launch,
                )
            except OSError as e:
                return AttemptResult(
                    prover,
                    AttemptOutcome.SYSTEM_ERROR,
                    message=f"could not start {spec.executable}: {e.strerror or e}",
                )
            failure = launch_failure(report.exit.code, scanner.tail) if launch else None
            if failure is not None:  # the launcher's exec or confinement failed, not the prover
                return AttemptResult(
                    prover, AttemptOutcome.SYSTEM_ERROR, message=f"could not start: {failure}"
                )
            checks = CheckContext(
                workdir, input_name, self._environment(workdir), limits, scope, self._guard
            )
            return await certify(
                spec, problem, _classify(prover, report, scanner), scanner.kept, checks
            )
        finally:
            if not remove_small_scratch(workdir):
                await off_loop(lambda: remove_scratch(workdir))

    def _environment(self, workdir: Path) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            **self._guard.environment,
        }


# What an attempt's directory may hold to be removed in the event loop: a few unlinks cost
# less than the hand-over to a spawn thread and back (measured at 32 clients: 0.14 ms less
# server CPU per solve), and freeing a small file's blocks is quick.
_SMALL_FILES = 8
_SMALL_BYTES = 1024 * 1024


def remove_small_scratch(workdir: Path) -> bool:
    """Remove an attempt's directory if it is small: a few files side by side (the input, a
    model), unlinked one by one. Returns False, having removed nothing, when it holds more, a
    large file (a proof) or a subdirectory: that is `remove_scratch`'s, off the loop."""
    try:
        with os.scandir(workdir) as listing:
            entries = list(itertools.islice(listing, _SMALL_FILES + 1))
        if len(entries) > _SMALL_FILES:
            return False
        size = 0
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return False
            size += entry.stat(follow_symlinks=False).st_size
        if size > _SMALL_BYTES:
            return False
        for entry in entries:
            os.unlink(entry.path)  # a symbolic link goes, not what it points to
        os.rmdir(workdir)
    except FileNotFoundError:
        return not os.path.lexists(workdir)  # never made: no spawn; or a file went meanwhile
    except OSError:
        return False
    return True


def remove_scratch(workdir: Path) -> None:
    """Remove an attempt's directory, whatever it holds (what `remove_small_scratch` left:
    many files, a large one, subdirectories), through `rmtree`, which unlinks a symbolic link
    rather than following it."""
    shutil.rmtree(workdir, ignore_errors=True)


_ANSWER_OF = {
    Finding.PROVED: (AttemptOutcome.PROVED, Answer.PROVED),
    Finding.INCONSISTENT_PREMISES: (AttemptOutcome.INCONSISTENT_PREMISES, Answer.PROVED),
    Finding.REFUTED: (AttemptOutcome.NO_PROOF_FOUND, Answer.REFUTED),
    Finding.UNKNOWN: (AttemptOutcome.NO_PROOF_FOUND, Answer.UNKNOWN),
    Finding.TIMEOUT: (AttemptOutcome.TIMEOUT, Answer.UNKNOWN),
}
_ERROR_OF = {
    Finding.INVALID_INPUT: AttemptOutcome.INVALID_INPUT,
    Finding.UNSUPPORTED_FEATURE: AttemptOutcome.UNSUPPORTED_FEATURE,
    Finding.PROVER_ERROR: AttemptOutcome.PROVER_ERROR,
}


def _classify(prover: str, report: ProcessReport, scanner: OutputScanner) -> AttemptResult:
    answer: Match | None = scanner.answer
    said = _ANSWER_OF[answer.finding][1] if answer else Answer.NONE
    base = AttemptResult(
        prover,
        AttemptOutcome.PROVER_ERROR,
        answer=said,
        status=answer.line if answer else "",
        elapsed_ns=report.reaped_ns - report.started_ns,
        exit=report.exit,
        output_tail=scanner.tail,
        output_bytes=scanner.total_bytes,
    )
    # A prover that finished with a decisive answer of its own before the signal could land
    # was not preempted: its answer stands.
    finished_alone = report.exit.code is not None and said.decisive and scanner.error is None
    if report.preemption is not None and not finished_alone:
        p = report.preemption
        stop = Stop(p.reason, latency_ns=report.reaped_ns - p.trigger_ns, escalated=p.escalated)
        return replace(base, outcome=stopped_outcome(stop), stop=stop)
    if scanner.error is not None:
        return replace(
            base, outcome=_ERROR_OF[scanner.error.finding], message=scanner.error.message
        )
    if answer is not None:
        return replace(base, outcome=_ANSWER_OF[answer.finding][0])
    if report.cpu_limited:
        return replace(base, outcome=AttemptOutcome.TIMEOUT, message="CPU time limit reached")
    return replace(base, message=failure_message(report.exit, scanner))


def failure_message(exit_status: Exit, scanner: OutputScanner) -> str:
    if exit_status.signal == signal.SIGXFSZ:
        how = "killed by SIGXFSZ: a file reached the size limit (temp_disk_mb)"
    elif exit_status.signal is not None:
        how = f"killed by {signal.Signals(exit_status.signal).name}"
    elif exit_status.code:
        how = f"exited with code {exit_status.code}"
    else:
        how = "exited without an answer"
    last = scanner.tail.strip().splitlines()[-1:] if scanner.tail.strip() else []
    return f"{how}: {last[0]}" if last else how
