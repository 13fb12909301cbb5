"""The values every layer speaks: problems, answers, outcomes, reasons.

These mirror the Cap'n Proto schema one to one (same names, same cases) so the wire layer
converts mechanically, but they know nothing of Cap'n Proto.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Format(enum.Enum):
    AUTO = "auto"
    SMTLIB2 = "smtlib2"
    DIMACS = "dimacs"
    TPTP = "tptp"


class Strategy(enum.Enum):
    FIRST_WINS = "firstWins"
    ALL = "all"
    QUORUM = "quorum"


class Answer(enum.Enum):
    """What a prover said about the problem."""

    NONE = "none"
    PROVED = "proved"  # unsat, Theorem, Unsatisfiable, ContradictoryAxioms
    REFUTED = "refuted"  # sat, CounterSatisfiable, Satisfiable
    UNKNOWN = "unknown"  # gave up, ran out of resources

    @property
    def decisive(self) -> bool:
        return self in (Answer.PROVED, Answer.REFUTED)


class Grounds(enum.Enum):
    """How a decisive answer was established."""

    NONE = "none"  # no decisive answer
    UNCHECKED = "unchecked"  # one prover's word
    MODEL_CHECKED = "modelChecked"  # its model satisfies every clause or assertion
    PROOF_CHECKED = "proofChecked"  # a proof checker accepted its proof
    CONFIRMED = "confirmed"  # a second, independent prover gave the same answer
    CERTIFICATE_FAILED = "certificateFailed"  # its certificate failed: a wrong answer

    @property
    def certified(self) -> bool:
        return self in (Grounds.MODEL_CHECKED, Grounds.PROOF_CHECKED)


class AttemptOutcome(enum.Enum):
    """The echidna host's eight cases, plus `cancelled`."""

    PROVED = "proved"
    NO_PROOF_FOUND = "noProofFound"
    INVALID_INPUT = "invalidInput"
    UNSUPPORTED_FEATURE = "unsupportedFeature"
    TIMEOUT = "timeout"
    INCONSISTENT_PREMISES = "inconsistentPremises"
    PROVER_ERROR = "proverError"
    SYSTEM_ERROR = "systemError"
    CANCELLED = "cancelled"


class CancelCause(enum.Enum):
    CLIENT = "client"
    TOKEN_DROPPED = "tokenDropped"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"
    PREEMPTED = "preempted"


@dataclass(frozen=True)
class CancelReason:
    cause: CancelCause
    message: str = ""

    def __str__(self) -> str:
        return self.message or self.cause.value


class ErrorKind(enum.Enum):
    INVALID_REQUEST = "invalidRequest"
    UNKNOWN_PROVER = "unknownProver"
    PROVER_UNAVAILABLE = "proverUnavailable"
    UNSUPPORTED_FORMAT = "unsupportedFormat"
    REQUEST_TOO_LARGE = "requestTooLarge"
    INVALID_INPUT = "invalidInput"
    PROVER_ERROR = "proverError"
    SYSTEM_ERROR = "systemError"
    NO_PROVER = "noProver"
    UNAUTHENTICATED = "unauthenticated"
    OVERLOADED = "overloaded"
    FORBIDDEN = "forbidden"
    INTERNAL = "internal"


@dataclass(frozen=True)
class SolveError:
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class Problem:
    content: bytes
    format: Format  # never AUTO once the request is accepted
    goal_id: str = ""


@dataclass(frozen=True)
class Stop:
    """Why and how fast the race stopped an attempt."""

    reason: CancelReason
    latency_ns: int  # trigger to reaped
    escalated: bool  # SIGTERM was not enough


@dataclass(frozen=True)
class Exit:
    """How the process ended: `code` or `signal`, neither when it never started."""

    code: int | None = None
    signal: int | None = None


@dataclass(frozen=True)
class AttemptResult:
    prover: str
    outcome: AttemptOutcome
    answer: Answer = Answer.NONE
    status: str = ""
    message: str = ""
    stop: Stop | None = None
    elapsed_ns: int = 0
    exit: Exit = field(default_factory=Exit)
    output_tail: str = ""
    output_bytes: int = 0
    grounds: Grounds = Grounds.NONE
    worker: str = ""  # the remote worker that ran it; empty when this server did


@dataclass(frozen=True)
class Conflict:
    """Decisive answers that contradict each other, with no certificate to settle them."""

    proved: tuple[str, ...]  # provers that answered proved
    refuted: tuple[str, ...]  # provers that answered refuted


class CachePolicy(enum.Enum):
    """What a request lets the verdict cache do."""

    USE = "use"  # answer from the cache when it holds the goal; store new verdicts
    CERTIFIED_ONLY = "certifiedOnly"  # only certified or confirmed verdicts may answer
    BYPASS = "bypass"  # neither read nor write it
    REFRESH = "refresh"  # race afresh and overwrite what it holds


class Source(enum.Enum):
    """Where an outcome came from."""

    RACE = "race"
    CACHE = "cache"
    JOINED = "joined"  # an identical race already running for another caller


@dataclass(frozen=True)
class CacheHit:
    found_us: int  # when the verdict was first found, microseconds since the Unix epoch
    found_by: str  # the prover whose answer it was
    solve_id: str  # the solve that found it


class Verdict(enum.Enum):
    UNKNOWN = "unknown"
    PROVED = "proved"
    REFUTED = "refuted"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class SolveOutcome:
    solve_id: str
    goal_id: str
    verdict: Verdict
    strategy: Strategy
    format: Format
    attempts: tuple[AttemptResult, ...] = ()
    winner: str = ""
    cancel_reason: CancelReason | None = None  # with Verdict.CANCELLED
    error: SolveError | None = None  # with Verdict.ERROR
    disagreement: bool = False
    elapsed_ns: int = 0
    deadline_ms: int = 0  # the deadline that applied; 0 when the request was refused
    grounds: Grounds = Grounds.NONE  # how the verdict was established
    conflict: Conflict | None = None  # contradicting answers nothing settled (verdict unknown)
    source: Source = Source.RACE
    cached: CacheHit | None = None  # with Source.CACHE


class SolveState(enum.Enum):
    RUNNING = "running"
    CANCELLING = "cancelling"
    FINISHED = "finished"


class AttemptState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"


@dataclass(frozen=True)
class AttemptStatus:
    prover: str
    state: AttemptState
    outcome: AttemptOutcome | None
    elapsed_ns: int
    output_bytes: int


@dataclass(frozen=True)
class SolveStatus:
    solve_id: str
    state: SolveState
    cancel_reason: CancelReason | None
    winner: str
    elapsed_ns: int
    attempts: tuple[AttemptStatus, ...]
    source: Source = Source.RACE


@dataclass(frozen=True)
class SolveRequest:
    """A caller's request, as read off the wire and not yet validated."""

    content: bytes
    goal_id: str = ""
    format: Format = Format.AUTO
    provers: tuple[str, ...] = ()
    strategy: Strategy = Strategy.FIRST_WINS
    quorum: int = 2
    timeout_ms: int = 0
    confirm: bool = False  # a decisive answer must be certified or confirmed before it counts
    cache: CachePolicy = CachePolicy.USE
    # With no prover available yet (workers still starting), wait up to this long for one.
    wait_for_capacity_ms: int = 0


@dataclass(frozen=True)
class ProverInfo:
    name: str
    version: str
    formats: tuple[Format, ...]
    available: bool
    default: bool = True  # raced when a request names no provers
    engine: str = ""  # the solver behind it, when several entries run one; empty: its name
    handles: frozenset[str] | None = None  # problem features it reads; None: all of its formats
