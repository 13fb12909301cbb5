"""Between Cap'n Proto messages and the core's values, both ways. Enum values are the schema's
enumerant names, so the mapping is mechanical."""

from __future__ import annotations

from typing import Any

from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    AttemptStatus,
    CacheHit,
    CachePolicy,
    CancelCause,
    CancelReason,
    Conflict,
    ErrorKind,
    Exit,
    Format,
    Grounds,
    ProverInfo,
    SolveError,
    SolveOutcome,
    SolveRequest,
    SolveState,
    SolveStatus,
    Source,
    Stop,
    Strategy,
    Verdict,
)

Builder = Any  # pycapnp builders are untyped
Reader = Any


def read_request(request: Reader) -> SolveRequest:
    """Raises ValueError (or a pycapnp error) on a message that cannot be read as a request."""
    return SolveRequest(
        content=bytes(request.content),
        goal_id=str(request.goalId),
        format=Format(str(request.format)),
        provers=tuple(str(p) for p in request.provers),
        strategy=Strategy(str(request.strategy)),
        quorum=int(request.quorum),
        timeout_ms=int(request.timeoutMs),
        confirm=bool(request.confirm),
        cache=CachePolicy(str(request.cache)),
        wait_for_capacity_ms=int(request.waitForCapacityMs),
    )


def write_reason(builder: Builder, reason: CancelReason) -> None:
    builder.cause = reason.cause.value
    builder.message = reason.message


def write_error(builder: Builder, error: SolveError) -> None:
    builder.kind = error.kind.value
    builder.message = error.message


def write_outcome(builder: Builder, outcome: SolveOutcome) -> None:
    builder.schemaVersion = 2
    builder.solveId = outcome.solve_id
    builder.goalId = outcome.goal_id
    verdict = builder.verdict
    if outcome.verdict is Verdict.CANCELLED and outcome.cancel_reason is not None:
        write_reason(verdict.init("cancelled"), outcome.cancel_reason)
    elif outcome.verdict is Verdict.ERROR and outcome.error is not None:
        write_error(verdict.init("error"), outcome.error)
    else:
        setattr(verdict, outcome.verdict.value, None)
    builder.winner = outcome.winner
    builder.strategy = outcome.strategy.value
    builder.format = outcome.format.value
    attempts = builder.init("attempts", len(outcome.attempts))
    for i, attempt in enumerate(outcome.attempts):
        write_attempt(attempts[i], attempt)
    builder.disagreement = outcome.disagreement
    builder.elapsedUs = outcome.elapsed_ns // 1000
    builder.deadlineMs = outcome.deadline_ms
    builder.grounds = outcome.grounds.value
    if outcome.conflict is not None:
        write_conflict(builder.init("conflict"), outcome.conflict)
    write_provenance(builder, outcome)


def write_conflict(builder: Builder, conflict: Conflict) -> None:
    for field, names in (("proved", conflict.proved), ("refuted", conflict.refuted)):
        entries = builder.init(field, len(names))
        for i, name in enumerate(names):
            entries[i] = name


def write_provenance(builder: Builder, outcome: SolveOutcome) -> None:
    """Where the verdict came from: a race, a race joined or the cache, and the cache's record."""
    builder.source = outcome.source.value
    if outcome.cached is not None:
        cached = builder.init("cached")
        cached.foundUs = outcome.cached.found_us
        cached.foundBy = outcome.cached.found_by
        cached.solveId = outcome.cached.solve_id


def write_attempt(builder: Builder, attempt: AttemptResult) -> None:
    builder.prover = attempt.prover
    builder.outcome = attempt.outcome.value
    builder.answer = attempt.answer.value
    builder.status = attempt.status
    builder.message = attempt.message
    if attempt.stop is not None:
        stop = builder.init("stop")
        write_reason(stop.reason, attempt.stop.reason)
        stop.latencyUs = attempt.stop.latency_ns // 1000
        stop.escalated = attempt.stop.escalated
    builder.elapsedUs = attempt.elapsed_ns // 1000
    if attempt.exit.signal is not None:
        builder.exit.signal = attempt.exit.signal
    elif attempt.exit.code is not None:
        builder.exit.code = attempt.exit.code
    else:
        builder.exit.notStarted = None
    builder.outputTail = attempt.output_tail
    builder.outputBytes = attempt.output_bytes
    builder.grounds = attempt.grounds.value
    builder.worker = attempt.worker


def write_status(builder: Builder, status: SolveStatus) -> None:
    builder.solveId = status.solve_id
    builder.state = status.state.value
    if status.cancel_reason is not None:
        write_reason(builder.init("cancelReason"), status.cancel_reason)
    builder.winner = status.winner
    builder.elapsedUs = status.elapsed_ns // 1000
    builder.source = status.source.value
    attempts = builder.init("attempts", len(status.attempts))
    for i, attempt in enumerate(status.attempts):
        a = attempts[i]
        a.prover = attempt.prover
        a.state = attempt.state.value
        if attempt.outcome is not None:
            a.outcome = attempt.outcome.value
        a.elapsedUs = attempt.elapsed_ns // 1000
        a.outputBytes = attempt.output_bytes


def write_provers(builder: Builder, provers: list[ProverInfo]) -> None:
    for i, info in enumerate(provers):
        entry = builder[i]
        entry.name = info.name
        entry.version = info.version
        formats = entry.init("formats", len(info.formats))
        for j, f in enumerate(info.formats):
            formats[j] = f.value
        entry.available = info.available


# --- reading what the server wrote (used by the Python client) -------------------------------


def read_reason(reader: Reader) -> CancelReason:
    return CancelReason(CancelCause(str(reader.cause)), str(reader.message))


def read_outcome(reader: Reader) -> SolveOutcome:
    which = str(reader.verdict.which())
    return SolveOutcome(
        solve_id=str(reader.solveId),
        goal_id=str(reader.goalId),
        verdict=Verdict(which),
        strategy=Strategy(str(reader.strategy)),
        format=Format(str(reader.format)),
        attempts=tuple(read_attempt(a) for a in reader.attempts),
        winner=str(reader.winner),
        cancel_reason=read_reason(reader.verdict.cancelled) if which == "cancelled" else None,
        error=(
            SolveError(ErrorKind(str(reader.verdict.error.kind)), str(reader.verdict.error.message))
            if which == "error"
            else None
        ),
        disagreement=bool(reader.disagreement),
        elapsed_ns=int(reader.elapsedUs) * 1000,
        deadline_ms=int(reader.deadlineMs),
        grounds=Grounds(str(reader.grounds)),
        conflict=(
            Conflict(
                proved=tuple(str(p) for p in reader.conflict.proved),
                refuted=tuple(str(p) for p in reader.conflict.refuted),
            )
            if reader._has("conflict")
            else None
        ),
        source=Source(str(reader.source)),
        cached=read_cache_hit(reader.cached) if reader._has("cached") else None,
    )


def read_cache_hit(reader: Reader) -> CacheHit:
    return CacheHit(int(reader.foundUs), str(reader.foundBy), str(reader.solveId))


def read_attempt(reader: Reader) -> AttemptResult:
    stop = None
    if reader._has("stop"):
        s = reader.stop
        stop = Stop(read_reason(s.reason), int(s.latencyUs) * 1000, bool(s.escalated))
    exit_kind = str(reader.exit.which())
    exit_status = (
        Exit(code=int(reader.exit.code))
        if exit_kind == "code"
        else Exit(signal=int(reader.exit.signal))
        if exit_kind == "signal"
        else Exit()
    )
    return AttemptResult(
        prover=str(reader.prover),
        outcome=AttemptOutcome(str(reader.outcome)),
        answer=Answer(str(reader.answer)),
        status=str(reader.status),
        message=str(reader.message),
        stop=stop,
        elapsed_ns=int(reader.elapsedUs) * 1000,
        exit=exit_status,
        output_tail=str(reader.outputTail),
        output_bytes=int(reader.outputBytes),
        grounds=Grounds(str(reader.grounds)),
        worker=str(reader.worker),
    )


def read_status(reader: Reader) -> SolveStatus:
    return SolveStatus(
        solve_id=str(reader.solveId),
        state=SolveState(str(reader.state)),
        cancel_reason=read_reason(reader.cancelReason) if reader._has("cancelReason") else None,
        winner=str(reader.winner),
        elapsed_ns=int(reader.elapsedUs) * 1000,
        attempts=tuple(
            AttemptStatus(
                prover=str(a.prover),
                state=AttemptState(str(a.state)),
                outcome=(AttemptOutcome(str(a.outcome)) if str(a.state) == "finished" else None),
                elapsed_ns=int(a.elapsedUs) * 1000,
                output_bytes=int(a.outputBytes),
            )
            for a in reader.attempts
        ),
        source=Source(str(reader.source)),
    )


def read_provers(readers: Reader) -> list[ProverInfo]:
    return [
        ProverInfo(
            name=str(p.name),
            version=str(p.version),
            formats=tuple(Format(str(f)) for f in p.formats),
            available=bool(p.available),
        )
        for p in readers
    ]


def write_request(builder: Builder, request: SolveRequest) -> None:
    builder.schemaVersion = 1
    builder.goalId = request.goal_id
    builder.content = request.content
    builder.format = request.format.value
    provers = builder.init("provers", len(request.provers))
    for i, name in enumerate(request.provers):
        provers[i] = name
    builder.strategy = request.strategy.value
    builder.quorum = request.quorum
    builder.timeoutMs = request.timeout_ms
    builder.confirm = request.confirm
    builder.cache = request.cache.value
    builder.waitForCapacityMs = request.wait_for_capacity_ms
