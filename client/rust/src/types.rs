//! Plain Rust values for everything the service sends and receives.
//!
//! Each type here is a copy of one struct or enum of `schemas/proofrace.capnp`,
//! decoded once, so callers never hold Cap'n Proto readers (or the RPC messages
//! behind them) longer than a call.
//!
//! The contract only ever appends enumerants and union members. A value newer
//! than this crate's copy of the schema decodes to an `Other(n)` variant carrying
//! its ordinal, instead of failing the whole message.

use std::fmt;
use std::time::Duration;

use crate::proofrace_capnp as pc;

/// How the server reads the problem text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Format {
    /// Detected by the server from the content.
    #[default]
    Auto,
    /// SMT-LIB 2.
    Smtlib2,
    /// DIMACS CNF.
    Dimacs,
    /// TPTP.
    Tptp,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// How the race is decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Strategy {
    /// The first decisive answer wins; every other attempt is preempted.
    #[default]
    FirstWins,
    /// Every attempt runs to completion (cross-checking).
    All,
    /// Stop as soon as [`SolveRequest::quorum`] provers agree on a decisive answer.
    Quorum,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// What ended a race, or stopped one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CancelCause {
    /// `cancel()` was called; the message is the caller's reason.
    Client,
    /// Every reference to the token was released while no `result()` waited.
    TokenDropped,
    /// The caller's connection closed or its process died.
    Disconnected,
    /// The solve's deadline passed.
    Timeout,
    /// The server is stopping.
    Shutdown,
    /// Another attempt decided the race; the message names it.
    Preempted,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// A cancel cause with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CancelReason {
    /// Why.
    pub cause: CancelCause,
    /// The caller's own words for [`CancelCause::Client`], the winner's name for
    /// [`CancelCause::Preempted`], and so on.
    pub message: String,
}

/// The kind of a refused or failed solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ErrorKind {
    /// The request contradicts itself (bad quorum, repeated prover, no content).
    InvalidRequest,
    /// A named prover is not in the server's registry.
    UnknownProver,
    /// A named prover is known but not installed on the server.
    ProverUnavailable,
    /// The format was not recognised, or a named prover cannot read it.
    UnsupportedFormat,
    /// The content exceeds the server's limit.
    RequestTooLarge,
    /// The provers rejected the problem text.
    InvalidInput,
    /// Every attempt failed.
    ProverError,
    /// The server could not run the attempts.
    SystemError,
    /// No installed prover reads the format.
    NoProver,
    /// The credential was refused.
    Unauthenticated,
    /// Too many solves in flight (on the connection or in all); retry later.
    Overloaded,
    /// The credential does not grant this role.
    Forbidden,
    /// An unexpected server fault; the message names the server's log entry.
    Internal,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// A service-level error, carried inside an [`Outcome`] rather than as an RPC failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServiceError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The server's (or the prover's) explanation.
    pub message: String,
}

/// The decision of a whole race.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Verdict {
    /// No attempt was decisive.
    Unknown,
    /// `unsat`; TPTP Theorem, Unsatisfiable or ContradictoryAxioms.
    Proved,
    /// `sat`; TPTP CounterSatisfiable or Satisfiable.
    Refuted,
    /// The deadline passed before a decision.
    Timeout,
    /// The race was cancelled before a decision.
    Cancelled(CancelReason),
    /// The request was refused or no attempt could run.
    Error(ServiceError),
    /// A union member newer than this crate's schema (its discriminant).
    Other(u16),
}

impl Verdict {
    /// True for [`Verdict::Proved`] and [`Verdict::Refuted`].
    pub fn is_decisive(&self) -> bool {
        matches!(self, Verdict::Proved | Verdict::Refuted)
    }
}

/// How one attempt ended: the echidna host's eight cases, then `Cancelled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AttemptOutcome {
    /// The prover proved the goal.
    Proved,
    /// No proof: includes a definite `sat` / CounterSatisfiable (see [`Attempt::answer`]).
    NoProofFound,
    /// The prover rejected the problem text.
    InvalidInput,
    /// The problem uses something the prover does not support.
    UnsupportedFeature,
    /// The attempt ran out of time.
    Timeout,
    /// The premises contradict each other.
    InconsistentPremises,
    /// The prover failed.
    ProverError,
    /// The server failed to run the prover.
    SystemError,
    /// The race stopped this attempt; [`Attempt::stop`] says why and how fast.
    Cancelled,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// The answer a prover gave, whatever its outcome was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Answer {
    /// No answer.
    None,
    /// Proved (`unsat`, Theorem, ...).
    Proved,
    /// Refuted (`sat`, CounterSatisfiable, ...).
    Refuted,
    /// The prover gave up or ran out of resources.
    Unknown,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// How the race stopped one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stop {
    /// Why it was stopped.
    pub reason: CancelReason,
    /// From the trigger (cancel called, winner found, deadline) to the process reaped.
    pub latency: Duration,
    /// SIGKILL was needed after the SIGTERM grace period.
    pub escalated: bool,
}

/// How the prover process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Exit {
    /// The process was never started.
    NotStarted,
    /// It exited with this code.
    Code(i32),
    /// It was ended by this signal.
    Signal(i32),
    /// A union member newer than this crate's schema (its discriminant).
    Other(u16),
}

/// How a decisive answer was established.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Grounds {
    /// No decisive answer.
    #[default]
    None,
    /// One prover's word.
    Unchecked,
    /// The model it gave satisfies every clause or assertion.
    ModelChecked,
    /// A proof checker accepted its proof.
    ProofChecked,
    /// A second, independent prover gave the same answer.
    Confirmed,
    /// Its certificate was checked and failed: a wrong answer, never counted.
    CertificateFailed,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// Decisive answers that contradicted each other with nothing to settle them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Conflict {
    /// Provers that answered proved.
    pub proved: Vec<String>,
    /// Provers that answered refuted.
    pub refuted: Vec<String>,
}

/// Where an outcome came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Source {
    /// Provers were raced for this solve.
    #[default]
    Race,
    /// The server's verdict cache answered.
    Cache,
    /// Joined an identical race already running for another caller.
    Joined,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// Where a cached verdict came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CacheHit {
    /// When the verdict was first found, in microseconds since the Unix epoch.
    pub found_us: u64,
    /// The prover whose answer it was.
    pub found_by: String,
    /// The solve that found it.
    pub solve_id: String,
}

/// Whether a solve may be answered from, and may fill, the server's verdict cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CachePolicy {
    /// Answer from the cache when it holds the goal; store new verdicts.
    #[default]
    Use,
    /// Like `Use`, but only certified or confirmed verdicts may come from it.
    CertifiedOnly,
    /// Neither read nor write the cache.
    Bypass,
    /// Race afresh and overwrite what the cache holds.
    Refresh,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// One prover's attempt at the problem, after it was reaped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Attempt {
    /// The prover's name, as in [`ProverInfo::name`].
    pub prover: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// What it answered.
    pub answer: Answer,
    /// The prover's own status line, e.g. `unsat` or `SZS status Theorem`.
    pub status: String,
    /// The prover's error message, when it gave one.
    pub message: String,
    /// Set only when the race stopped this attempt.
    pub stop: Option<Stop>,
    /// Started to reaped.
    pub elapsed: Duration,
    /// How the process ended.
    pub exit: Exit,
    /// The last bytes of its combined stdout and stderr.
    pub output_tail: String,
    /// Everything it wrote, including what the tail dropped.
    pub output_bytes: u64,
    /// How its answer was established.
    pub grounds: Grounds,
    /// The remote worker that ran it; `None` when the server ran it itself.
    pub worker: Option<String>,
}

/// The result of a solve: every attempt has been reaped when this exists.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Outcome {
    /// The schema version the server wrote.
    pub schema_version: u16,
    /// The server's id for this solve, as in its logs.
    pub solve_id: String,
    /// The caller's id from [`SolveRequest::goal_id`].
    pub goal_id: String,
    /// The decision.
    pub verdict: Verdict,
    /// The prover whose answer decided, if one did.
    pub winner: Option<String>,
    /// The strategy the race ran with.
    pub strategy: Strategy,
    /// The format the content was read as.
    pub format: Format,
    /// Every attempt, in the server's order.
    pub attempts: Vec<Attempt>,
    /// Decisive answers contradicted each other.
    pub disagreement: bool,
    /// From the solve being accepted to every attempt reaped.
    pub elapsed: Duration,
    /// The deadline that applied: the request's, or the server's default, capped at
    /// its maximum. Zero when the request was refused (or the server predates it).
    pub deadline: Duration,
    /// How the verdict was established.
    pub grounds: Grounds,
    /// Set when decisive answers contradicted each other and nothing settled it
    /// (the verdict is then `Unknown`).
    pub conflict: Option<Conflict>,
    /// Raced, answered from the cache, or joined to an identical race.
    pub source: Source,
    /// Set when the cache answered.
    pub cached: Option<CacheHit>,
}

impl Outcome {
    /// The winner's attempt, if there was a winner.
    pub fn winning_attempt(&self) -> Option<&Attempt> {
        let winner = self.winner.as_deref()?;
        self.attempts.iter().find(|a| a.prover == winner)
    }
}

/// The state of a whole race.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SolveState {
    /// Attempts are in flight.
    Running,
    /// The race was decided or cancelled; losers are being stopped.
    Cancelling,
    /// Every attempt is reaped: `result()` answers at once.
    Finished,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// The state of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AttemptState {
    /// The process is being started.
    Starting,
    /// The process runs.
    Running,
    /// Signalled, not yet reaped.
    Stopping,
    /// Reaped.
    Finished,
    /// An enumerant newer than this crate's schema.
    Other(u16),
}

/// A snapshot of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AttemptStatus {
    /// The prover's name.
    pub prover: String,
    /// Where the attempt is.
    pub state: AttemptState,
    /// Meaningful once [`AttemptState::Finished`].
    pub outcome: AttemptOutcome,
    /// Since the attempt started.
    pub elapsed: Duration,
    /// Output written so far.
    pub output_bytes: u64,
}

/// A snapshot of a race, from `status()` or `cancel()`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SolveStatus {
    /// The server's id for this solve, as in its logs.
    pub solve_id: String,
    /// Where the race is.
    pub state: SolveState,
    /// Set once the race was cancelled, by whatever cause.
    pub cancel_reason: Option<CancelReason>,
    /// The prover whose answer decided, if one did yet.
    pub winner: Option<String>,
    /// Since the solve was accepted.
    pub elapsed: Duration,
    /// One entry per attempt.
    pub attempts: Vec<AttemptStatus>,
    /// Raced, answered from the cache, or joined to an identical race.
    pub source: Source,
}

impl SolveStatus {
    /// True while the race runs and every attempt's process has been started.
    pub fn all_attempts_running(&self) -> bool {
        self.state == SolveState::Running
            && !self.attempts.is_empty()
            && self
                .attempts
                .iter()
                .all(|a| a.state == AttemptState::Running)
    }
}

/// One prover the server knows, installed or not.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProverInfo {
    /// The name to use in [`SolveRequest::provers`].
    pub name: String,
    /// As the binary reports it; empty when not installed.
    pub version: String,
    /// The formats it reads.
    pub formats: Vec<Format>,
    /// Installed on the server.
    pub available: bool,
}

/// What to solve and how: the plain form of the schema's `SolveRequest`.
///
/// ```
/// use proofrace_client::{SolveRequest, Strategy};
/// use std::time::Duration;
///
/// let request = SolveRequest::new(b"(assert false)(check-sat)".to_vec())
///     .goal_id("lemma-7")
///     .prover("z3")
///     .prover("cvc5")
///     .strategy(Strategy::FirstWins)
///     .timeout(Duration::from_secs(30));
/// assert_eq!(request.timeout_ms, 30_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SolveRequest {
    /// The caller's id, echoed in the outcome and in the server's logs.
    pub goal_id: String,
    /// The problem text.
    pub content: Vec<u8>,
    /// How to read it.
    pub format: Format,
    /// The provers to race; empty means every installed prover that reads the format.
    pub provers: Vec<String>,
    /// How the race is decided.
    pub strategy: Strategy,
    /// Agreeing provers needed by [`Strategy::Quorum`].
    pub quorum: u8,
    /// 0: the server's default. Capped at the server's maximum.
    pub timeout_ms: u32,
    /// A decisive answer must be certified or confirmed by a second prover.
    pub confirm: bool,
    /// Whether the server's verdict cache may answer, and be filled.
    pub cache: CachePolicy,
    /// With no prover available yet, wait up to this long (ms) for one.
    pub wait_for_capacity_ms: u32,
}

impl SolveRequest {
    /// A request with the schema's defaults for everything but the content.
    pub fn new(content: impl Into<Vec<u8>>) -> Self {
        SolveRequest {
            goal_id: String::new(),
            content: content.into(),
            format: Format::Auto,
            provers: Vec::new(),
            strategy: Strategy::FirstWins,
            quorum: 2,
            timeout_ms: 0,
            confirm: false,
            cache: CachePolicy::Use,
            wait_for_capacity_ms: 0,
        }
    }

    /// Sets the caller's id.
    pub fn goal_id(mut self, id: impl Into<String>) -> Self {
        self.goal_id = id.into();
        self
    }

    /// Sets the format instead of letting the server detect it.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Adds one prover to race.
    pub fn prover(mut self, name: impl Into<String>) -> Self {
        self.provers.push(name.into());
        self
    }

    /// Sets the strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the quorum (for [`Strategy::Quorum`]).
    pub fn quorum(mut self, quorum: u8) -> Self {
        self.quorum = quorum;
        self
    }

    /// Sets the deadline, rounded down to milliseconds and saturating at `u32::MAX` ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// Requires a certified or confirmed answer.
    pub fn confirm(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// Sets the cache policy.
    pub fn cache(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }

    /// Waits up to `wait` for a prover to become available (workers starting).
    pub fn wait_for_capacity(mut self, wait: Duration) -> Self {
        self.wait_for_capacity_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        self
    }

    /// Writes this request into a Cap'n Proto builder.
    pub(crate) fn write(&self, mut b: pc::solve_request::Builder<'_>) -> capnp::Result<()> {
        b.set_schema_version(pc::CURRENT_SCHEMA_VERSION);
        b.set_goal_id(self.goal_id.as_str());
        b.set_content(&self.content);
        b.set_format(self.format.to_wire()?);
        b.set_strategy(self.strategy.to_wire()?);
        b.set_quorum(self.quorum);
        b.set_timeout_ms(self.timeout_ms);
        b.set_confirm(self.confirm);
        b.set_cache(self.cache.to_wire()?);
        b.set_wait_for_capacity_ms(self.wait_for_capacity_ms);
        let len = u32::try_from(self.provers.len())
            .map_err(|_| capnp::Error::failed("too many provers".into()))?;
        let mut list = b.init_provers(len);
        for (i, name) in self.provers.iter().enumerate() {
            list.set(i as u32, name.as_str());
        }
        Ok(())
    }
}

// ---- decoding ----------------------------------------------------------------

fn text(r: capnp::Result<capnp::text::Reader<'_>>) -> capnp::Result<String> {
    // Lossy: a prover's output tail may cut a UTF-8 sequence in half.
    Ok(String::from_utf8_lossy(r?.as_bytes()).into_owned())
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

fn micros(us: u64) -> Duration {
    Duration::from_micros(us)
}

impl Format {
    pub(crate) fn from_wire(v: Result<pc::Format, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::Format::Auto) => Format::Auto,
            Ok(pc::Format::Smtlib2) => Format::Smtlib2,
            Ok(pc::Format::Dimacs) => Format::Dimacs,
            Ok(pc::Format::Tptp) => Format::Tptp,
            Err(capnp::NotInSchema(n)) => Format::Other(n),
        }
    }

    fn to_wire(self) -> capnp::Result<pc::Format> {
        Ok(match self {
            Format::Auto => pc::Format::Auto,
            Format::Smtlib2 => pc::Format::Smtlib2,
            Format::Dimacs => pc::Format::Dimacs,
            Format::Tptp => pc::Format::Tptp,
            Format::Other(n) => return Err(capnp::Error::failed(format!("unknown format {n}"))),
        })
    }
}

impl Strategy {
    fn from_wire(v: Result<pc::Strategy, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::Strategy::FirstWins) => Strategy::FirstWins,
            Ok(pc::Strategy::All) => Strategy::All,
            Ok(pc::Strategy::Quorum) => Strategy::Quorum,
            Err(capnp::NotInSchema(n)) => Strategy::Other(n),
        }
    }

    fn to_wire(self) -> capnp::Result<pc::Strategy> {
        Ok(match self {
            Strategy::FirstWins => pc::Strategy::FirstWins,
            Strategy::All => pc::Strategy::All,
            Strategy::Quorum => pc::Strategy::Quorum,
            Strategy::Other(n) => {
                return Err(capnp::Error::failed(format!("unknown strategy {n}")))
            }
        })
    }
}

impl CancelCause {
    fn from_wire(v: Result<pc::CancelCause, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::CancelCause::Client) => CancelCause::Client,
            Ok(pc::CancelCause::TokenDropped) => CancelCause::TokenDropped,
            Ok(pc::CancelCause::Disconnected) => CancelCause::Disconnected,
            Ok(pc::CancelCause::Timeout) => CancelCause::Timeout,
            Ok(pc::CancelCause::Shutdown) => CancelCause::Shutdown,
            Ok(pc::CancelCause::Preempted) => CancelCause::Preempted,
            Err(capnp::NotInSchema(n)) => CancelCause::Other(n),
        }
    }
}

impl CancelReason {
    pub(crate) fn read(r: pc::cancel_reason::Reader<'_>) -> capnp::Result<Self> {
        Ok(CancelReason {
            cause: CancelCause::from_wire(r.get_cause()),
            message: text(r.get_message())?,
        })
    }
}

impl ErrorKind {
    fn from_wire(v: Result<pc::ErrorKind, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::ErrorKind::InvalidRequest) => ErrorKind::InvalidRequest,
            Ok(pc::ErrorKind::UnknownProver) => ErrorKind::UnknownProver,
            Ok(pc::ErrorKind::ProverUnavailable) => ErrorKind::ProverUnavailable,
            Ok(pc::ErrorKind::UnsupportedFormat) => ErrorKind::UnsupportedFormat,
            Ok(pc::ErrorKind::RequestTooLarge) => ErrorKind::RequestTooLarge,
            Ok(pc::ErrorKind::InvalidInput) => ErrorKind::InvalidInput,
            Ok(pc::ErrorKind::ProverError) => ErrorKind::ProverError,
            Ok(pc::ErrorKind::SystemError) => ErrorKind::SystemError,
            Ok(pc::ErrorKind::NoProver) => ErrorKind::NoProver,
            Ok(pc::ErrorKind::Unauthenticated) => ErrorKind::Unauthenticated,
            Ok(pc::ErrorKind::Overloaded) => ErrorKind::Overloaded,
            Ok(pc::ErrorKind::Forbidden) => ErrorKind::Forbidden,
            Ok(pc::ErrorKind::Internal) => ErrorKind::Internal,
            Err(capnp::NotInSchema(n)) => ErrorKind::Other(n),
        }
    }
}

impl Verdict {
    fn read(r: pc::solve_outcome::verdict::Reader<'_>) -> capnp::Result<Self> {
        use pc::solve_outcome::verdict::Which;
        Ok(match r.which() {
            Ok(Which::Unknown(())) => Verdict::Unknown,
            Ok(Which::Proved(())) => Verdict::Proved,
            Ok(Which::Refuted(())) => Verdict::Refuted,
            Ok(Which::Timeout(())) => Verdict::Timeout,
            Ok(Which::Cancelled(reason)) => Verdict::Cancelled(CancelReason::read(reason?)?),
            Ok(Which::Error(e)) => {
                let e = e?;
                Verdict::Error(ServiceError {
                    kind: ErrorKind::from_wire(e.get_kind()),
                    message: text(e.get_message())?,
                })
            }
            Err(capnp::NotInSchema(n)) => Verdict::Other(n),
        })
    }
}

impl AttemptOutcome {
    fn from_wire(v: Result<pc::AttemptOutcome, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::AttemptOutcome::Proved) => AttemptOutcome::Proved,
            Ok(pc::AttemptOutcome::NoProofFound) => AttemptOutcome::NoProofFound,
            Ok(pc::AttemptOutcome::InvalidInput) => AttemptOutcome::InvalidInput,
            Ok(pc::AttemptOutcome::UnsupportedFeature) => AttemptOutcome::UnsupportedFeature,
            Ok(pc::AttemptOutcome::Timeout) => AttemptOutcome::Timeout,
            Ok(pc::AttemptOutcome::InconsistentPremises) => AttemptOutcome::InconsistentPremises,
            Ok(pc::AttemptOutcome::ProverError) => AttemptOutcome::ProverError,
            Ok(pc::AttemptOutcome::SystemError) => AttemptOutcome::SystemError,
            Ok(pc::AttemptOutcome::Cancelled) => AttemptOutcome::Cancelled,
            Err(capnp::NotInSchema(n)) => AttemptOutcome::Other(n),
        }
    }
}

impl Answer {
    fn from_wire(v: Result<pc::Answer, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::Answer::None) => Answer::None,
            Ok(pc::Answer::Proved) => Answer::Proved,
            Ok(pc::Answer::Refuted) => Answer::Refuted,
            Ok(pc::Answer::Unknown) => Answer::Unknown,
            Err(capnp::NotInSchema(n)) => Answer::Other(n),
        }
    }
}

impl Grounds {
    fn from_wire(v: Result<pc::Grounds, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::Grounds::None) => Grounds::None,
            Ok(pc::Grounds::Unchecked) => Grounds::Unchecked,
            Ok(pc::Grounds::ModelChecked) => Grounds::ModelChecked,
            Ok(pc::Grounds::ProofChecked) => Grounds::ProofChecked,
            Ok(pc::Grounds::Confirmed) => Grounds::Confirmed,
            Ok(pc::Grounds::CertificateFailed) => Grounds::CertificateFailed,
            Err(capnp::NotInSchema(n)) => Grounds::Other(n),
        }
    }
}

impl Source {
    fn from_wire(v: Result<pc::Source, capnp::NotInSchema>) -> Self {
        match v {
            Ok(pc::Source::Race) => Source::Race,
            Ok(pc::Source::Cache) => Source::Cache,
            Ok(pc::Source::Joined) => Source::Joined,
            Err(capnp::NotInSchema(n)) => Source::Other(n),
        }
    }
}

impl CachePolicy {
    fn to_wire(self) -> capnp::Result<pc::CachePolicy> {
        Ok(match self {
            CachePolicy::Use => pc::CachePolicy::Use,
            CachePolicy::CertifiedOnly => pc::CachePolicy::CertifiedOnly,
            CachePolicy::Bypass => pc::CachePolicy::Bypass,
            CachePolicy::Refresh => pc::CachePolicy::Refresh,
            CachePolicy::Other(n) => {
                return Err(capnp::Error::failed(format!("unknown cache policy {n}")))
            }
        })
    }
}

fn texts(r: capnp::Result<capnp::text_list::Reader<'_>>) -> capnp::Result<Vec<String>> {
    r?.iter().map(text).collect()
}

impl Attempt {
    fn read(r: pc::attempt::Reader<'_>) -> capnp::Result<Self> {
        use pc::attempt::exit::Which;
        let stop = if r.has_stop() {
            let s = r.get_stop()?;
            Some(Stop {
                reason: CancelReason::read(s.get_reason()?)?,
                latency: micros(s.get_latency_us()),
                escalated: s.get_escalated(),
            })
        } else {
            None
        };
        Ok(Attempt {
            prover: text(r.get_prover())?,
            outcome: AttemptOutcome::from_wire(r.get_outcome()),
            answer: Answer::from_wire(r.get_answer()),
            status: text(r.get_status())?,
            message: text(r.get_message())?,
            stop,
            elapsed: micros(r.get_elapsed_us()),
            exit: match r.get_exit().which() {
                Ok(Which::NotStarted(())) => Exit::NotStarted,
                Ok(Which::Code(c)) => Exit::Code(c),
                Ok(Which::Signal(s)) => Exit::Signal(s),
                Err(capnp::NotInSchema(n)) => Exit::Other(n),
            },
            output_tail: text(r.get_output_tail())?,
            output_bytes: r.get_output_bytes(),
            grounds: Grounds::from_wire(r.get_grounds()),
            worker: non_empty(text(r.get_worker())?),
        })
    }
}

impl Outcome {
    pub(crate) fn read(r: pc::solve_outcome::Reader<'_>) -> capnp::Result<Self> {
        let attempts = r
            .get_attempts()?
            .iter()
            .map(Attempt::read)
            .collect::<capnp::Result<Vec<_>>>()?;
        Ok(Outcome {
            schema_version: r.get_schema_version(),
            solve_id: text(r.get_solve_id())?,
            goal_id: text(r.get_goal_id())?,
            verdict: Verdict::read(r.get_verdict())?,
            winner: non_empty(text(r.get_winner())?),
            strategy: Strategy::from_wire(r.get_strategy()),
            format: Format::from_wire(r.get_format()),
            attempts,
            disagreement: r.get_disagreement(),
            elapsed: micros(r.get_elapsed_us()),
            deadline: Duration::from_millis(u64::from(r.get_deadline_ms())),
            grounds: Grounds::from_wire(r.get_grounds()),
            conflict: if r.has_conflict() {
                let c = r.get_conflict()?;
                Some(Conflict {
                    proved: texts(c.get_proved())?,
                    refuted: texts(c.get_refuted())?,
                })
            } else {
                None
            },
            source: Source::from_wire(r.get_source()),
            cached: if r.has_cached() {
                let c = r.get_cached()?;
                Some(CacheHit {
                    found_us: c.get_found_us(),
                    found_by: text(c.get_found_by())?,
                    solve_id: text(c.get_solve_id())?,
                })
            } else {
                None
            },
        })
    }
}

impl SolveState {
    fn from_wire(v: Result<pc::solve_status::State, capnp::NotInSchema>) -> Self {
        use pc::solve_status::State;
        match v {
            Ok(State::Running) => SolveState::Running,
            Ok(State::Cancelling) => SolveState::Cancelling,
            Ok(State::Finished) => SolveState::Finished,
            Err(capnp::NotInSchema(n)) => SolveState::Other(n),
        }
    }
}

impl AttemptState {
    fn from_wire(v: Result<pc::attempt_status::State, capnp::NotInSchema>) -> Self {
        use pc::attempt_status::State;
        match v {
            Ok(State::Starting) => AttemptState::Starting,
            Ok(State::Running) => AttemptState::Running,
            Ok(State::Stopping) => AttemptState::Stopping,
            Ok(State::Finished) => AttemptState::Finished,
            Err(capnp::NotInSchema(n)) => AttemptState::Other(n),
        }
    }
}

impl SolveStatus {
    pub(crate) fn read(r: pc::solve_status::Reader<'_>) -> capnp::Result<Self> {
        let attempts = r
            .get_attempts()?
            .iter()
            .map(|a| {
                Ok(AttemptStatus {
                    prover: text(a.get_prover())?,
                    state: AttemptState::from_wire(a.get_state()),
                    outcome: AttemptOutcome::from_wire(a.get_outcome()),
                    elapsed: micros(a.get_elapsed_us()),
                    output_bytes: a.get_output_bytes(),
                })
            })
            .collect::<capnp::Result<Vec<_>>>()?;
        let cancel_reason = if r.has_cancel_reason() {
            Some(CancelReason::read(r.get_cancel_reason()?)?)
        } else {
            None
        };
        Ok(SolveStatus {
            solve_id: text(r.get_solve_id())?,
            state: SolveState::from_wire(r.get_state()),
            cancel_reason,
            winner: non_empty(text(r.get_winner())?),
            elapsed: micros(r.get_elapsed_us()),
            attempts,
            source: Source::from_wire(r.get_source()),
        })
    }
}

impl ProverInfo {
    pub(crate) fn read(r: pc::prover_info::Reader<'_>) -> capnp::Result<Self> {
        Ok(ProverInfo {
            name: text(r.get_name())?,
            version: text(r.get_version())?,
            formats: r.get_formats()?.iter().map(Format::from_wire).collect(),
            available: r.get_available(),
        })
    }
}

// ---- names -------------------------------------------------------------------

/// `Display` writes the enumerant's name as the schema spells it, which is also
/// how the server's logs and metric labels name it (e.g. `tokenDropped`). An
/// `Other(n)` value prints as `#n`.
macro_rules! schema_names {
    ($($ty:ident { $($variant:ident => $name:literal),* $(,)? })*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($ty::$variant => f.write_str($name),)*
                    $ty::Other(n) => write!(f, "#{n}"),
                }
            }
        }
    )*};
}

schema_names! {
    Format { Auto => "auto", Smtlib2 => "smtlib2", Dimacs => "dimacs", Tptp => "tptp" }
    Strategy { FirstWins => "firstWins", All => "all", Quorum => "quorum" }
    CancelCause {
        Client => "client", TokenDropped => "tokenDropped", Disconnected => "disconnected",
        Timeout => "timeout", Shutdown => "shutdown", Preempted => "preempted",
    }
    ErrorKind {
        InvalidRequest => "invalidRequest", UnknownProver => "unknownProver",
        ProverUnavailable => "proverUnavailable", UnsupportedFormat => "unsupportedFormat",
        RequestTooLarge => "requestTooLarge", InvalidInput => "invalidInput",
        ProverError => "proverError", SystemError => "systemError", NoProver => "noProver",
        Unauthenticated => "unauthenticated", Overloaded => "overloaded",
        Forbidden => "forbidden", Internal => "internal",
    }
    Grounds {
        None => "none", Unchecked => "unchecked", ModelChecked => "modelChecked",
        ProofChecked => "proofChecked", Confirmed => "confirmed",
        CertificateFailed => "certificateFailed",
    }
    Source { Race => "race", Cache => "cache", Joined => "joined" }
    CachePolicy {
        Use => "use", CertifiedOnly => "certifiedOnly", Bypass => "bypass", Refresh => "refresh",
    }
    AttemptOutcome {
        Proved => "proved", NoProofFound => "noProofFound", InvalidInput => "invalidInput",
        UnsupportedFeature => "unsupportedFeature", Timeout => "timeout",
        InconsistentPremises => "inconsistentPremises", ProverError => "proverError",
        SystemError => "systemError", Cancelled => "cancelled",
    }
    Answer { None => "none", Proved => "proved", Refuted => "refuted", Unknown => "unknown" }
    SolveState { Running => "running", Cancelling => "cancelling", Finished => "finished" }
    AttemptState {
        Starting => "starting", Running => "running", Stopping => "stopping",
        Finished => "finished",
    }
}

impl fmt::Display for Verdict {
    /// The union member's name: `proved`, `cancelled`, `error`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Unknown => f.write_str("unknown"),
            Verdict::Proved => f.write_str("proved"),
            Verdict::Refuted => f.write_str("refuted"),
            Verdict::Timeout => f.write_str("timeout"),
            Verdict::Cancelled(_) => f.write_str("cancelled"),
            Verdict::Error(_) => f.write_str("error"),
            Verdict::Other(n) => write!(f, "#{n}"),
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    /// Parses the schema's names (`firstWins`, `all`, `quorum`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "firstWins" => Ok(Strategy::FirstWins),
            "all" => Ok(Strategy::All),
            "quorum" => Ok(Strategy::Quorum),
            _ => Err(format!("unknown strategy {s:?} (firstWins, all, quorum)")),
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// Parses the schema's names (`auto`, `smtlib2`, `dimacs`, `tptp`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "smtlib2" => Ok(Format::Smtlib2),
            "dimacs" => Ok(Format::Dimacs),
            "tptp" => Ok(Format::Tptp),
            _ => Err(format!(
                "unknown format {s:?} (auto, smtlib2, dimacs, tptp)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_schema_and_parse_back() {
        assert_eq!(CancelCause::TokenDropped.to_string(), "tokenDropped");
        assert_eq!(CancelCause::Other(17).to_string(), "#17");
        assert_eq!(AttemptOutcome::NoProofFound.to_string(), "noProofFound");
        for s in [Strategy::FirstWins, Strategy::All, Strategy::Quorum] {
            assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
        }
        for f in [Format::Auto, Format::Smtlib2, Format::Dimacs, Format::Tptp] {
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert!("first-wins".parse::<Strategy>().is_err());
    }

    #[test]
    fn requests_round_trip_through_the_wire_form() {
        let request = SolveRequest::new(b"p cnf 1 1\n1 0\n".to_vec())
            .goal_id("g1")
            .format(Format::Dimacs)
            .prover("cadical")
            .prover("minisat")
            .strategy(Strategy::Quorum)
            .quorum(2)
            .timeout(Duration::from_millis(1500));
        let mut message = capnp::message::Builder::new_default();
        request
            .write(message.init_root::<pc::solve_request::Builder>())
            .unwrap();
        let r = message
            .get_root_as_reader::<pc::solve_request::Reader>()
            .unwrap();
        assert_eq!(r.get_schema_version(), pc::CURRENT_SCHEMA_VERSION);
        assert_eq!(r.get_goal_id().unwrap().to_str().unwrap(), "g1");
        assert_eq!(r.get_content().unwrap(), &request.content[..]);
        assert_eq!(r.get_format().unwrap(), pc::Format::Dimacs);
        assert_eq!(r.get_strategy().unwrap(), pc::Strategy::Quorum);
        assert_eq!(r.get_quorum(), 2);
        assert_eq!(r.get_timeout_ms(), 1500);
        let provers: Vec<_> = r
            .get_provers()
            .unwrap()
            .iter()
            .map(|p| p.unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(provers, ["cadical", "minisat"]);

        let bad = SolveRequest::new(vec![]).format(Format::Other(9));
        let mut message = capnp::message::Builder::new_default();
        assert!(bad
            .write(message.init_root::<pc::solve_request::Builder>())
            .is_err());
    }

    #[test]
    fn outcomes_decode_including_newer_enumerants() {
        let mut message = capnp::message::Builder::new_default();
        {
            let mut o = message.init_root::<pc::solve_outcome::Builder>();
            o.set_solve_id("s-1");
            o.set_goal_id("g");
            o.set_winner("");
            o.set_elapsed_us(2500);
            {
                let mut c = o.reborrow().get_verdict().init_cancelled();
                c.set_cause(pc::CancelCause::TokenDropped);
                c.set_message("");
            }
            let mut attempts = o.init_attempts(2);
            {
                let mut a = attempts.reborrow().get(0);
                a.set_prover("z3");
                a.set_outcome(pc::AttemptOutcome::Cancelled);
                a.reborrow().get_exit().set_signal(15);
                let mut stop = a.init_stop();
                stop.set_latency_us(2200);
                stop.init_reason().set_cause(pc::CancelCause::TokenDropped);
            }
            {
                let mut a = attempts.get(1);
                a.set_prover("cvc5");
                a.set_outcome(pc::AttemptOutcome::Proved);
                a.reborrow().get_exit().set_code(0);
            }
        }
        let words = capnp::serialize::write_message_to_words(&message);
        let reader =
            capnp::serialize::read_message(&mut &words[..], capnp::message::ReaderOptions::new())
                .unwrap();
        let o = Outcome::read(reader.get_root::<pc::solve_outcome::Reader>().unwrap()).unwrap();
        assert_eq!(o.solve_id, "s-1");
        assert_eq!(o.winner, None);
        assert_eq!(o.elapsed, Duration::from_micros(2500));
        assert_eq!(
            o.verdict,
            Verdict::Cancelled(CancelReason {
                cause: CancelCause::TokenDropped,
                message: String::new()
            })
        );
        assert_eq!(o.attempts[0].exit, Exit::Signal(15));
        let stop = o.attempts[0].stop.as_ref().unwrap();
        assert_eq!(stop.latency, Duration::from_micros(2200));
        assert_eq!(stop.reason.cause, CancelCause::TokenDropped);
        assert_eq!(o.attempts[1].stop, None);
        assert_eq!(o.attempts[1].exit, Exit::Code(0));
        assert_eq!(
            AttemptOutcome::from_wire(Err(capnp::NotInSchema(12))),
            AttemptOutcome::Other(12)
        );
    }
}
