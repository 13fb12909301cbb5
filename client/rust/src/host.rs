//! The echidna host's prover outcome, with the data each case carries, plus a
//! distinct `Cancelled` case.
//!
//! The host knows eight results for a prover run, each with the elapsed time and
//! what it needs to act: the prover's message and its location for invalid input,
//! the limit that applied for a timeout, the exit code of a failed prover. A race
//! adds one thing: a run stopped on purpose. That is not a failure, so it gets its
//! own case, carrying the reason.

use std::fmt;
use std::time::Duration;

use crate::types::{
    Answer, Attempt, AttemptOutcome, CancelCause, CancelReason, ErrorKind, Exit, Outcome,
    ServiceError, Verdict,
};

/// Where in the problem text a prover found fault: 1-based line, and column when given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Location {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, when the prover said.
    pub column: Option<u32>,
}

impl Location {
    /// Finds a location in a prover's message: `line 3 column 10` (z3),
    /// `file:3.10:` (cvc5), `file:3:(Column 10)` (E).
    pub fn parse(message: &str) -> Option<Location> {
        fn number(s: &str) -> Option<(u32, &str)> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            Some((s[..end].parse().ok()?, &s[end..]))
        }
        // z3: "line 3 column 10: unknown constant x"
        if let Some(at) = message.find("line ") {
            if let Some((line, rest)) = number(&message[at + 5..]) {
                let column = rest
                    .strip_prefix(" column ")
                    .and_then(number)
                    .map(|(c, _)| c);
                return Some(Location { line, column });
            }
        }
        // cvc5 "problem.smt2:3.10:", E "problem.p:3:(Column 10):"
        for (at, _) in message.match_indices(':') {
            let Some((line, rest)) = number(&message[at + 1..]) else {
                continue;
            };
            if let Some((column, tail)) = rest.strip_prefix('.').and_then(number) {
                if tail.starts_with(':') {
                    return Some(Location {
                        line,
                        column: Some(column),
                    });
                }
            }
            if let Some((column, tail)) = rest.strip_prefix(":(Column ").and_then(number) {
                if tail.starts_with(')') {
                    return Some(Location {
                        line,
                        column: Some(column),
                    });
                }
            }
        }
        None
    }
}

/// The host's eight-case prover outcome, with its data, plus [`HostOutcome::Cancelled`].
///
/// Every case carries `elapsed_ms`: for a whole race, from the solve being
/// accepted to every attempt reaped; for one attempt, its process's life.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "case", rename_all = "camelCase"))]
pub enum HostOutcome {
    /// The goal was proved.
    Proved {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The prover that proved it (for a cached verdict, the one that first did).
        prover: String,
    },
    /// No proof: the provers gave up, or found a countermodel (`sat`).
    NoProofFound {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// What the provers said, e.g. `refuted by z3 (sat)`.
        reason: String,
    },
    /// The problem text was rejected.
    InvalidInput {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The prover's own message.
        reason: String,
        /// Where it found fault, when its message says.
        location: Option<Location>,
    },
    /// The problem (or its format) is beyond what the provers support.
    UnsupportedFeature {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The prover's (or the server's) message.
        reason: String,
    },
    /// Time ran out before a decision.
    Timeout {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The limit that applied, in whole seconds rounded up (the request's, or
        /// the server's default when the request gave none). Zero when unknown.
        limit_secs: u64,
    },
    /// The premises contradict each other (TPTP `ContradictoryAxioms`).
    InconsistentPremises {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The prover that found it.
        prover: String,
    },
    /// The prover failed, or decisive answers contradicted each other.
    ProverError {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// The prover's message, or what the failure was.
        reason: String,
        /// The failed prover's exit code, when it exited (not killed by a signal).
        exit_code: Option<i32>,
    },
    /// The machinery around the provers failed (or the request was refused).
    SystemError {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// What failed.
        reason: String,
    },
    /// The run was stopped on purpose: a winner elsewhere, the caller's cancel, a
    /// dropped handle, a lost connection. Not a failure.
    Cancelled {
        /// Milliseconds taken.
        elapsed_ms: u64,
        /// Why it was stopped.
        reason: CancelReason,
    },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn limit_secs(deadline: Duration) -> u64 {
    millis(deadline).div_ceil(1000)
}

impl HostOutcome {
    /// The case's name as the schema spells the attempt outcome (`proved`,
    /// `noProofFound`, ..., `cancelled`).
    pub fn case(&self) -> &'static str {
        match self {
            HostOutcome::Proved { .. } => "proved",
            HostOutcome::NoProofFound { .. } => "noProofFound",
            HostOutcome::InvalidInput { .. } => "invalidInput",
            HostOutcome::UnsupportedFeature { .. } => "unsupportedFeature",
            HostOutcome::Timeout { .. } => "timeout",
            HostOutcome::InconsistentPremises { .. } => "inconsistentPremises",
            HostOutcome::ProverError { .. } => "proverError",
            HostOutcome::SystemError { .. } => "systemError",
            HostOutcome::Cancelled { .. } => "cancelled",
        }
    }

    /// The time the case carries.
    pub fn elapsed(&self) -> Duration {
        let ms = match self {
            HostOutcome::Proved { elapsed_ms, .. }
            | HostOutcome::NoProofFound { elapsed_ms, .. }
            | HostOutcome::InvalidInput { elapsed_ms, .. }
            | HostOutcome::UnsupportedFeature { elapsed_ms, .. }
            | HostOutcome::Timeout { elapsed_ms, .. }
            | HostOutcome::InconsistentPremises { elapsed_ms, .. }
            | HostOutcome::ProverError { elapsed_ms, .. }
            | HostOutcome::SystemError { elapsed_ms, .. }
            | HostOutcome::Cancelled { elapsed_ms, .. } => *elapsed_ms,
        };
        Duration::from_millis(ms)
    }

    /// True when the host would count the run as a success.
    pub fn is_proved(&self) -> bool {
        matches!(self, HostOutcome::Proved { .. })
    }

    /// True for a run stopped on purpose.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, HostOutcome::Cancelled { .. })
    }

    /// One attempt as the host would see a single prover run; `deadline` is the
    /// race's (for [`HostOutcome::Timeout`]'s limit), see [`Outcome::deadline`].
    ///
    /// The eight cases map one to one. A cancelled attempt carries the reason
    /// from its `stop` (or [`CancelCause::Other`]`(u16::MAX)` when the server
    /// left it unset). An outcome newer than this crate is a `SystemError`.
    pub fn of_attempt(a: &Attempt, deadline: Duration) -> HostOutcome {
        let elapsed_ms = millis(a.elapsed);
        let said = |fallback: &str| -> String {
            if !a.message.is_empty() {
                a.message.clone()
            } else if !a.status.is_empty() {
                a.status.clone()
            } else {
                fallback.to_owned()
            }
        };
        match a.outcome {
            AttemptOutcome::Proved => HostOutcome::Proved {
                elapsed_ms,
                prover: a.prover.clone(),
            },
            AttemptOutcome::NoProofFound => HostOutcome::NoProofFound {
                elapsed_ms,
                reason: match a.answer {
                    Answer::Refuted => format!("refuted by {} ({})", a.prover, a.status),
                    _ => format!("{}: {}", a.prover, said("no answer")),
                },
            },
            AttemptOutcome::InvalidInput => HostOutcome::InvalidInput {
                elapsed_ms,
                reason: said("the input was rejected"),
                location: Location::parse(&a.message),
            },
            AttemptOutcome::UnsupportedFeature => HostOutcome::UnsupportedFeature {
                elapsed_ms,
                reason: said("unsupported"),
            },
            AttemptOutcome::Timeout => HostOutcome::Timeout {
                elapsed_ms,
                limit_secs: limit_secs(deadline),
            },
            AttemptOutcome::InconsistentPremises => HostOutcome::InconsistentPremises {
                elapsed_ms,
                prover: a.prover.clone(),
            },
            AttemptOutcome::ProverError => HostOutcome::ProverError {
                elapsed_ms,
                reason: format!("{}: {}", a.prover, said(&exit_text(a.exit))),
                exit_code: exit_code(a.exit),
            },
            AttemptOutcome::SystemError | AttemptOutcome::Other(_) => HostOutcome::SystemError {
                elapsed_ms,
                reason: format!("{}: {}", a.prover, said("the attempt could not run")),
            },
            AttemptOutcome::Cancelled => HostOutcome::Cancelled {
                elapsed_ms,
                reason: a
                    .stop
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .unwrap_or_else(|| CancelReason {
                        cause: CancelCause::Other(u16::MAX),
                        message: "cancelled without a stop record".into(),
                    }),
            },
        }
    }

    /// A whole race as one host outcome.
    ///
    /// * A decided race takes the winner's case: a proof from contradictory axioms
    ///   stays `InconsistentPremises`, a refutation is `NoProofFound` (the host's
    ///   reading of `sat`).
    /// * A [`conflict`](Outcome::conflict) (decisive answers contradicting each
    ///   other) is a `ProverError` naming both sides.
    /// * `unknown` is `NoProofFound`; `timeout` is `Timeout` with the limit that
    ///   applied ([`Outcome::deadline`]); `cancelled` is `Cancelled`.
    /// * An `error` verdict: `invalidInput` is `InvalidInput` with the rejecting
    ///   prover's message and location; a failure of every attempt is
    ///   `UnsupportedFeature` if a prover said the problem is beyond it, else
    ///   `ProverError` with the first failed prover's exit code; `unsupportedFormat`
    ///   and `noProver` are `UnsupportedFeature`; the rest (`systemError`, and
    ///   refusals of the request, which [`SolveHandle::result`](crate::SolveHandle::result)
    ///   reports as errors instead) are `SystemError`.
    pub fn of_outcome(o: &Outcome) -> HostOutcome {
        let elapsed_ms = millis(o.elapsed);
        if let Some(c) = &o.conflict {
            return HostOutcome::ProverError {
                elapsed_ms,
                reason: format!(
                    "decisive answers conflict: proved by {}, refuted by {}",
                    c.proved.join(", "),
                    c.refuted.join(", ")
                ),
                exit_code: None,
            };
        }
        let winner = o.winning_attempt();
        let winner_name = || {
            o.winner
                .clone()
                .or_else(|| o.cached.as_ref().map(|c| c.found_by.clone()))
                .unwrap_or_default()
        };
        match &o.verdict {
            Verdict::Proved => match winner {
                Some(w) if w.outcome == AttemptOutcome::InconsistentPremises => {
                    HostOutcome::InconsistentPremises {
                        elapsed_ms,
                        prover: w.prover.clone(),
                    }
                }
                _ => HostOutcome::Proved {
                    elapsed_ms,
                    prover: winner_name(),
                },
            },
            Verdict::Refuted => HostOutcome::NoProofFound {
                elapsed_ms,
                reason: match winner {
                    Some(w) => format!("refuted by {} ({})", w.prover, w.status),
                    None => format!("refuted by {}", winner_name()),
                },
            },
            Verdict::Unknown => HostOutcome::NoProofFound {
                elapsed_ms,
                reason: if o.attempts.is_empty() {
                    "no decisive answer".to_owned()
                } else {
                    let said: Vec<String> = o
                        .attempts
                        .iter()
                        .map(|a| {
                            format!(
                                "{} {}",
                                a.prover,
                                if a.status.is_empty() {
                                    a.outcome.to_string()
                                } else {
                                    a.status.clone()
                                }
                            )
                        })
                        .collect();
                    format!("no decisive answer: {}", said.join(", "))
                },
            },
            Verdict::Timeout => HostOutcome::Timeout {
                elapsed_ms,
                limit_secs: limit_secs(o.deadline),
            },
            Verdict::Cancelled(reason) => HostOutcome::Cancelled {
                elapsed_ms,
                reason: reason.clone(),
            },
            Verdict::Error(e) => of_error(e, o, elapsed_ms),
            Verdict::Other(n) => HostOutcome::SystemError {
                elapsed_ms,
                reason: format!("a verdict this client does not know (#{n})"),
            },
        }
    }
}

fn exit_code(exit: Exit) -> Option<i32> {
    match exit {
        Exit::Code(c) => Some(c),
        _ => None,
    }
}

fn exit_text(exit: Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with code {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
        Exit::NotStarted => "not started".into(),
        Exit::Other(n) => format!("ended in a way this client does not know (#{n})"),
    }
}

fn of_error(e: &ServiceError, o: &Outcome, elapsed_ms: u64) -> HostOutcome {
    let first = |outcome: AttemptOutcome| o.attempts.iter().find(|a| a.outcome == outcome);
    match e.kind {
        ErrorKind::InvalidInput => {
            let rejecting = first(AttemptOutcome::InvalidInput);
            HostOutcome::InvalidInput {
                elapsed_ms,
                reason: e.message.clone(),
                location: rejecting
                    .and_then(|a| Location::parse(&a.message))
                    .or_else(|| Location::parse(&e.message)),
            }
        }
        ErrorKind::ProverError => {
            if let Some(a) = first(AttemptOutcome::UnsupportedFeature) {
                return HostOutcome::UnsupportedFeature {
                    elapsed_ms,
                    reason: format!("{}: {}", a.prover, a.message),
                };
            }
            HostOutcome::ProverError {
                elapsed_ms,
                reason: e.message.clone(),
                exit_code: first(AttemptOutcome::ProverError).and_then(|a| exit_code(a.exit)),
            }
        }
        ErrorKind::UnsupportedFormat | ErrorKind::NoProver => HostOutcome::UnsupportedFeature {
            elapsed_ms,
            reason: e.message.clone(),
        },
        _ => HostOutcome::SystemError {
            elapsed_ms,
            reason: format!("{}: {}", e.kind, e.message),
        },
    }
}

impl fmt::Display for HostOutcome {
    /// The case's name; a cancelled run adds its cause and message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOutcome::Cancelled { reason, .. } => {
                write!(f, "cancelled ({}: {})", reason.cause, reason.message)
            }
            other => f.write_str(other.case()),
        }
    }
}

impl From<&Outcome> for HostOutcome {
    fn from(o: &Outcome) -> Self {
        HostOutcome::of_outcome(o)
    }
}

impl Outcome {
    /// The race as the host's outcome; see [`HostOutcome::of_outcome`].
    pub fn host_outcome(&self) -> HostOutcome {
        HostOutcome::of_outcome(self)
    }

    /// Each attempt as the host's outcome of one prover run, in the server's order.
    pub fn attempt_host_outcomes(&self) -> impl Iterator<Item = (&Attempt, HostOutcome)> {
        self.attempts
            .iter()
            .map(|a| (a, HostOutcome::of_attempt(a, self.deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Conflict, Format, Grounds, Source, Stop, Strategy};

    fn attempt(prover: &str, outcome: AttemptOutcome) -> Attempt {
        Attempt {
            prover: prover.into(),
            outcome,
            answer: Answer::None,
            status: String::new(),
            message: String::new(),
            stop: None,
            elapsed: Duration::from_millis(7),
            exit: Exit::Code(0),
            output_tail: String::new(),
            output_bytes: 0,
            grounds: Grounds::None,
            worker: None,
        }
    }

    fn outcome(verdict: Verdict, winner: Option<&str>, attempts: Vec<Attempt>) -> Outcome {
        Outcome {
            schema_version: 2,
            solve_id: "s".into(),
            goal_id: "g".into(),
            verdict,
            winner: winner.map(Into::into),
            strategy: Strategy::FirstWins,
            format: Format::Smtlib2,
            attempts,
            disagreement: false,
            elapsed: Duration::from_millis(1234),
            deadline: Duration::from_millis(1500),
            grounds: Grounds::Unchecked,
            conflict: None,
            source: Source::Race,
            cached: None,
        }
    }

    #[test]
    fn locations_are_read_from_the_provers_words() {
        let at = |line, column| Some(Location { line, column });
        assert_eq!(
            Location::parse("line 3 column 10: unknown constant x"),
            at(3, Some(10))
        );
        assert_eq!(
            Location::parse("Parse Error: problem.smt2:4.7: Symbol 'x' not declared"),
            at(4, Some(7))
        );
        assert_eq!(
            Location::parse("problem.p:2:(Column 5):(just read 'x'): syntax error"),
            at(2, Some(5))
        );
        assert_eq!(Location::parse("line 12: oops"), at(12, None));
        assert_eq!(Location::parse("no location here: at all"), None);
    }

    #[test]
    fn eight_cases_map_one_to_one_with_their_data() {
        let deadline = Duration::from_millis(1500);
        let mut bad = attempt("z3", AttemptOutcome::InvalidInput);
        bad.message = "line 2 column 9: unknown constant y".into();
        assert_eq!(
            HostOutcome::of_attempt(&bad, deadline),
            HostOutcome::InvalidInput {
                elapsed_ms: 7,
                reason: "line 2 column 9: unknown constant y".into(),
                location: Some(Location {
                    line: 2,
                    column: Some(9)
                }),
            }
        );
        let mut failed = attempt("minisat", AttemptOutcome::ProverError);
        failed.exit = Exit::Code(3);
        assert!(matches!(
            HostOutcome::of_attempt(&failed, deadline),
            HostOutcome::ProverError { exit_code: Some(3), ref reason, .. } if reason.contains("code 3")
        ));
        assert_eq!(
            HostOutcome::of_attempt(&attempt("z3", AttemptOutcome::Timeout), deadline),
            HostOutcome::Timeout {
                elapsed_ms: 7,
                limit_secs: 2
            }
        );
        let cases = [
            (AttemptOutcome::Proved, "proved"),
            (AttemptOutcome::NoProofFound, "noProofFound"),
            (AttemptOutcome::UnsupportedFeature, "unsupportedFeature"),
            (AttemptOutcome::InconsistentPremises, "inconsistentPremises"),
            (AttemptOutcome::SystemError, "systemError"),
            (AttemptOutcome::Other(42), "systemError"),
            (AttemptOutcome::Cancelled, "cancelled"),
        ];
        for (from, to) in cases {
            let h = HostOutcome::of_attempt(&attempt("p", from), deadline);
            assert_eq!(h.case(), to, "{from:?}");
            assert_eq!(h.elapsed(), Duration::from_millis(7));
        }
    }

    #[test]
    fn cancelled_attempt_carries_its_stop_reason() {
        let reason = CancelReason {
            cause: CancelCause::Preempted,
            message: "preempted by z3".into(),
        };
        let mut a = attempt("cvc5", AttemptOutcome::Cancelled);
        a.stop = Some(Stop {
            reason: reason.clone(),
            latency: Duration::from_micros(2100),
            escalated: false,
        });
        assert_eq!(
            HostOutcome::of_attempt(&a, Duration::ZERO),
            HostOutcome::Cancelled {
                elapsed_ms: 7,
                reason
            }
        );
    }

    #[test]
    fn a_race_maps_by_its_verdict_and_winner() {
        let o = outcome(
            Verdict::Proved,
            Some("eprover"),
            vec![
                attempt("SPASS", AttemptOutcome::Cancelled),
                attempt("eprover", AttemptOutcome::InconsistentPremises),
            ],
        );
        assert_eq!(
            o.host_outcome(),
            HostOutcome::InconsistentPremises {
                elapsed_ms: 1234,
                prover: "eprover".into()
            }
        );

        let timeout = outcome(Verdict::Timeout, None, vec![]);
        assert_eq!(
            timeout.host_outcome(),
            HostOutcome::Timeout {
                elapsed_ms: 1234,
                limit_secs: 2
            }
        );

        let mut conflicted = outcome(Verdict::Unknown, None, vec![]);
        conflicted.conflict = Some(Conflict {
            proved: vec!["z3".into()],
            refuted: vec!["liar".into()],
        });
        assert!(matches!(
            conflicted.host_outcome(),
            HostOutcome::ProverError { ref reason, .. } if reason.contains("liar")
        ));

        let mut unsupported = attempt("z3", AttemptOutcome::UnsupportedFeature);
        unsupported.message = "logic not supported".into();
        let failed = outcome(
            Verdict::Error(ServiceError {
                kind: ErrorKind::ProverError,
                message: "z3: logic not supported".into(),
            }),
            None,
            vec![unsupported],
        );
        assert_eq!(failed.host_outcome().case(), "unsupportedFeature");

        let reason = CancelReason {
            cause: CancelCause::TokenDropped,
            message: String::new(),
        };
        let cancelled = outcome(Verdict::Cancelled(reason.clone()), None, vec![]);
        assert_eq!(
            cancelled.host_outcome(),
            HostOutcome::Cancelled {
                elapsed_ms: 1234,
                reason
            }
        );
        assert!(cancelled.host_outcome().is_cancelled());

        for (kind, case) in [
            (ErrorKind::NoProver, "unsupportedFeature"),
            (ErrorKind::UnsupportedFormat, "unsupportedFeature"),
            (ErrorKind::SystemError, "systemError"),
            (ErrorKind::Other(99), "systemError"),
        ] {
            let o = outcome(
                Verdict::Error(ServiceError {
                    kind,
                    message: String::new(),
                }),
                None,
                vec![],
            );
            assert_eq!(o.host_outcome().case(), case, "{kind:?}");
        }
        assert_eq!(
            outcome(Verdict::Other(9), None, vec![])
                .host_outcome()
                .case(),
            "systemError"
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn host_outcomes_travel_as_json_with_their_case_named() {
        let h = HostOutcome::InvalidInput {
            elapsed_ms: 7,
            reason: "unknown constant y".into(),
            location: Some(Location {
                line: 3,
                column: Some(11),
            }),
        };
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["case"], "invalidInput");
        assert_eq!(json["location"]["line"], 3);
        assert_eq!(serde_json::from_value::<HostOutcome>(json).unwrap(), h);
        let cancelled = HostOutcome::Cancelled {
            elapsed_ms: 1,
            reason: CancelReason {
                cause: CancelCause::TokenDropped,
                message: String::new(),
            },
        };
        let back: HostOutcome =
            serde_json::from_str(&serde_json::to_string(&cancelled).unwrap()).unwrap();
        assert_eq!(back, cancelled);
    }
}
