"""Checking an answer's certificate after the prover has exited, before the answer is reported.

What each prover leaves, the registry says (`model`, `proof`, `check`):
- a DIMACS `sat` with a model (`v` lines on its output, or minisat's result file): every
  clause must hold a true literal. Checked here, in a thread: linear in the problem's size.
- an SMT-LIB `sat` with the model it printed: the problem is rewritten with the model's
  values in place of the declarations and handed to a second solver (`check`); `sat` confirms
  the model, `unsat` refutes it.
- a DIMACS `unsat` with a DRAT proof: the proof checker (`check`) must accept it.

A certificate that holds gives `modelChecked` or `proofChecked`. One that fails makes the
answer a wrong one: outcome `proverError`, grounds `certificateFailed`, and the race never
counts it. When nothing could be checked (no certificate, a model too large to keep, the
checker missing or stopped) the answer stands as `unchecked`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from proofrace.backends.drat import read_dimacs
from proofrace.backends.process import Limits, supervise
from proofrace.backends.registry import MODEL_FILE, PROOF_FILE, ProverSpec
from proofrace.backends.smtscript import SyntaxProblem, check_script, read_model, read_script
from proofrace.backends.verdicts import Finding, OutputScanner, Rule
from proofrace.backends.watchdog import OrphanGuard
from proofrace.core.cancel import CancelScope
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CancelCause,
    CancelReason,
    Format,
    Grounds,
    Problem,
)

CHECK_FILE = "check.smt2"
# An SMT model check only evaluates the problem under the model, but a quantified problem can
# still be hard for the checking solver: past this the answer stays unchecked. (DRAT proofs,
# asked for by name, are checked until the attempt's deadline.)
SMT_CHECK_SECONDS = 5.0
# The largest output kept for reading a model from it: past this the answer stays unchecked.
MODEL_OUTPUT_BYTES = 32 * 1024 * 1024
_CHECK_TAIL_BYTES = 4096
# A DRAT proof larger than this is not checked (the checker holds it in memory).
MAX_PROOF_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CheckContext:
    """Where and how a checker process runs: the attempt's own directory, limits and scope
    (a preempted attempt's check is stopped with it)."""

    workdir: Path
    input_name: str  # the problem's file in `workdir`
    env: dict[str, str]
    limits: Limits
    scope: CancelScope
    guard: OrphanGuard


def output_to_keep(spec: ProverSpec) -> int:
    """How much of the prover's output the scanner must keep for `certify`."""
    return MODEL_OUTPUT_BYTES if spec.model == "stdout" else 0


async def certify(
    spec: ProverSpec,
    problem: Problem,
    result: AttemptResult,
    output: bytes | None,
    context: CheckContext,
) -> AttemptResult:
    """`result` with its grounds; a failed certificate turns it into the prover's error."""
    if not _stands(result):
        return result
    verdict: tuple[Grounds, str] | None = None
    if result.answer is Answer.REFUTED and spec.model:
        verdict = await _check_model(spec, problem, output, context)
    elif result.answer is Answer.PROVED and spec.proof == "drat":
        verdict = await _check_drat(spec, context)
    grounds, why = verdict or (Grounds.UNCHECKED, "")
    if grounds is Grounds.CERTIFICATE_FAILED:
        return replace(
            result,
            outcome=AttemptOutcome.PROVER_ERROR,
            grounds=grounds,
            message=f"wrong answer: {why}",
        )
    return replace(result, grounds=grounds)


def _stands(result: AttemptResult) -> bool:
    return (
        result.stop is None
        and result.answer.decisive
        and result.outcome
        in (
            AttemptOutcome.PROVED,
            AttemptOutcome.NO_PROOF_FOUND,
            AttemptOutcome.INCONSISTENT_PREMISES,
        )
    )


# --- models ------------------------------------------------------------------------------


async def _check_model(
    spec: ProverSpec, problem: Problem, output: bytes | None, context: CheckContext
) -> tuple[Grounds, str] | None:
    if spec.model == "file":
        path = context.workdir / MODEL_FILE
        printed = path.read_bytes() if path.is_file() else None
    else:
        printed = output
    if printed is None:
        return None
    text = printed.decode(errors="replace")
    if problem.format is Format.DIMACS:
        return await asyncio.to_thread(check_dimacs_model, problem.content, text)
    if problem.format is Format.SMTLIB2 and spec.check:
        return await _check_smt_model(spec, problem, text, context)
    return None


def dimacs_assignment(text: str) -> set[int] | None:
    """The literals a solver printed as its model: `v` lines, or minisat's `SAT` file."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "SAT":  # minisat's result file
        values = lines[1:]
    else:
        values = [line[1:] for line in lines if line.startswith("v")]
    if not values:
        return None
    try:
        return {int(t) for line in values for t in line.split()} - {0}
    except ValueError:
        return None


def check_dimacs_model(content: bytes, output: str) -> tuple[Grounds, str] | None:
    model = dimacs_assignment(output)
    if model is None:
        return None
    if clash := next((lit for lit in model if -lit in model), None):
        return Grounds.CERTIFICATE_FAILED, f"its model sets variable {abs(clash)} both ways"
    partial = False
    for number, clause in enumerate(read_dimacs(content.decode(errors="replace")), start=1):
        if any(lit in model for lit in clause):
            continue
        if all(-lit in model for lit in clause):
            shown = " ".join(map(str, clause))
            return Grounds.CERTIFICATE_FAILED, f"its model falsifies clause {number}: {shown} 0"
        partial = True  # a clause with unassigned literals only: cannot tell
    return (Grounds.UNCHECKED, "") if partial else (Grounds.MODEL_CHECKED, "")


async def _check_smt_model(
    spec: ProverSpec, problem: Problem, output: str, context: CheckContext
) -> tuple[Grounds, str] | None:
    try:
        script = read_script(problem.content.decode(errors="replace"))
        model = read_model(output)
    except SyntaxProblem:
        return None
    if model is None or not script.checkable:
        return None
    (context.workdir / CHECK_FILE).write_text(check_script(script, model))
    said = await run_checker(spec.check, _SMT_CHECK, context, time_limit=SMT_CHECK_SECONDS)
    if said is Finding.REFUTED:  # sat: the model holds
        return Grounds.MODEL_CHECKED, ""
    if said is Finding.PROVED:
        return Grounds.CERTIFICATE_FAILED, f"{spec.check[0]} finds its model violates the problem"
    return None


# --- proofs ------------------------------------------------------------------------------


async def _check_drat(spec: ProverSpec, context: CheckContext) -> tuple[Grounds, str] | None:
    proof = context.workdir / PROOF_FILE
    if not spec.check or not proof.is_file() or proof.stat().st_size > MAX_PROOF_BYTES:
        return None
    said = await run_checker(spec.check, _DRAT_CHECK, context)
    if said is Finding.PROVED:
        return Grounds.PROOF_CHECKED, ""
    if said is Finding.REFUTED:
        return Grounds.CERTIFICATE_FAILED, "its DRAT proof does not check"
    return None


# --- running a checker -------------------------------------------------------------------


# A checker's output read in the provers' vocabulary: for an SMT solver `refuted` is sat (the
# model holds) and `proved` unsat; for the proof checker `proved` is verified.
_SMT_CHECK = (
    Rule(re.compile(r"^sat$"), Finding.REFUTED),
    Rule(re.compile(r"^unsat$"), Finding.PROVED),
    Rule(re.compile(r"^\(error"), Finding.INVALID_INPUT),
)
_DRAT_CHECK = (
    Rule(re.compile(r"^s VERIFIED$"), Finding.PROVED),
    Rule(re.compile(r"^s NOT VERIFIED$"), Finding.REFUTED),
)


async def run_checker(
    command: Sequence[str],
    rules: tuple[Rule, ...],
    context: CheckContext,
    *,
    time_limit: float | None = None,
) -> Finding | None:
    """What the checker found, or None: not run, stopped (with the attempt, or past
    `time_limit` seconds), or no answer."""
    if context.scope.cancel_called:
        return None
    scope = context.scope.child()
    timer = (
        asyncio.get_running_loop().call_later(
            time_limit, scope.cancel, CancelReason(CancelCause.TIMEOUT, "the check took too long")
        )
        if time_limit is not None
        else None
    )
    try:
        return await _run_checker(command, rules, context, scope)
    finally:
        if timer is not None:
            timer.cancel()


async def _run_checker(
    command: Sequence[str], rules: tuple[Rule, ...], context: CheckContext, scope: CancelScope
) -> Finding | None:
    argv = [_placeholder(part, context.input_name) for part in command]
    if shutil.which(argv[0]) is None:
        return None
    scanner = OutputScanner(rules, _CHECK_TAIL_BYTES)
    try:
        report = await supervise(
            argv,
            cwd=context.workdir,
            env=context.env,
            limits=context.limits,
            scope=scope,
            output=scanner,
            guard=context.guard,
            on_spawn=lambda _pid: None,
            on_stopping=lambda: None,
        )
    except OSError:
        return None
    if report.preemption is not None or scanner.error is not None or scanner.answer is None:
        return None
    return scanner.answer.finding


def _placeholder(part: str, input_name: str) -> str:
    return (
        part.replace("{python}", sys.executable)
        .replace("{input}", input_name)
        .replace("{check}", CHECK_FILE)
        .replace("{proof}", PROOF_FILE)
    )
