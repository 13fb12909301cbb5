//! The echidna host's prover outcome, plus the `Cancelled` case it asks for.
//!
//! The host knows eight results for a prover run. A race adds one thing: an
//! attempt (or a whole solve) that was stopped on purpose. That is not a
//! failure, so it gets its own case, carrying the reason.

use std::fmt;

use crate::types::{
    Attempt, AttemptOutcome, CancelReason, ErrorKind, Outcome, ServiceError, Verdict,
};

/// The host's eight-case prover outcome, plus [`HostOutcome::Cancelled`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostOutcome {
    /// The goal was proved.
    Proved,
    /// No proof: the prover gave up, or found a countermodel (`sat`).
    NoProofFound,
    /// The problem text was rejected.
    InvalidInput,
    /// The problem (or its format) is beyond what the prover supports.
    UnsupportedFeature,
    /// Time ran out before a decision.
    Timeout,
    /// The premises contradict each other.
    InconsistentPremises,
    /// The prover failed.
    ProverError,
    /// The machinery around the prover failed.
    SystemError,
    /// The run was stopped on purpose (a winner elsewhere, the caller, a dropped token...).
    Cancelled {
        /// Why it was stopped.
        reason: CancelReason,
    },
}

impl HostOutcome {
    /// True when the host would count the run as a success.
    pub fn is_proved(&self) -> bool {
        matches!(self, HostOutcome::Proved)
    }
}

impl fmt::Display for HostOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostOutcome::Proved => f.write_str("proved"),
            HostOutcome::NoProofFound => f.write_str("noProofFound"),
            HostOutcome::InvalidInput => f.write_str("invalidInput"),
            HostOutcome::UnsupportedFeature => f.write_str("unsupportedFeature"),
            HostOutcome::Timeout => f.write_str("timeout"),
            HostOutcome::InconsistentPremises => f.write_str("inconsistentPremises"),
            HostOutcome::ProverError => f.write_str("proverError"),
            HostOutcome::SystemError => f.write_str("systemError"),
            HostOutcome::Cancelled { reason } => {
                write!(f, "cancelled ({}: {})", reason.cause, reason.message)
            }
        }
    }
}

impl From<&Attempt> for HostOutcome {
    /// One attempt as the host would see a single prover run.
    ///
    /// The eight cases map one to one. A cancelled attempt carries the reason
    /// from its `stop`; if the server left `stop` unset the reason is
    /// [`CancelCause::Other`](crate::CancelCause::Other)`(u16::MAX)` with an
    /// explanatory message, so the case stays `Cancelled`. An outcome newer than
    /// this crate maps to [`HostOutcome::SystemError`]: the host cannot act on it.
    fn from(a: &Attempt) -> Self {
        match a.outcome {
            AttemptOutcome::Proved => HostOutcome::Proved,
            AttemptOutcome::NoProofFound => HostOutcome::NoProofFound,
            AttemptOutcome::InvalidInput => HostOutcome::InvalidInput,
            AttemptOutcome::UnsupportedFeature => HostOutcome::UnsupportedFeature,
            AttemptOutcome::Timeout => HostOutcome::Timeout,
            AttemptOutcome::InconsistentPremises => HostOutcome::InconsistentPremises,
            AttemptOutcome::ProverError => HostOutcome::ProverError,
            AttemptOutcome::SystemError | AttemptOutcome::Other(_) => HostOutcome::SystemError,
            AttemptOutcome::Cancelled => HostOutcome::Cancelled {
                reason: a
                    .stop
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .unwrap_or_else(|| CancelReason {
                        cause: crate::CancelCause::Other(u16::MAX),
                        message: "cancelled without a stop record".into(),
                    }),
            },
        }
    }
}

impl From<&ServiceError> for HostOutcome {
    /// A refused or failed solve, as the host's nearest case.
    ///
    /// | service error | host outcome |
    /// |---|---|
    /// | `invalidInput`, `requestTooLarge` | `InvalidInput` (the problem itself was rejected) |
    /// | `unsupportedFormat`, `noProver` | `UnsupportedFeature` (nothing here reads it) |
    /// | `proverError` | `ProverError` |
    /// | `invalidRequest`, `unknownProver`, `proverUnavailable`, `systemError`, `unauthenticated`, `overloaded`, newer kinds | `SystemError` (the request or the deployment is at fault, not the problem) |
    fn from(e: &ServiceError) -> Self {
        match e.kind {
            ErrorKind::InvalidInput | ErrorKind::RequestTooLarge => HostOutcome::InvalidInput,
            ErrorKind::UnsupportedFormat | ErrorKind::NoProver => HostOutcome::UnsupportedFeature,
            ErrorKind::ProverError => HostOutcome::ProverError,
            ErrorKind::InvalidRequest
            | ErrorKind::UnknownProver
            | ErrorKind::ProverUnavailable
            | ErrorKind::SystemError
            | ErrorKind::Unauthenticated
            | ErrorKind::Overloaded
            | ErrorKind::Other(_) => HostOutcome::SystemError,
        }
    }
}

impl From<&Outcome> for HostOutcome {
    /// A whole race as one host outcome.
    ///
    /// A decided race takes the winner's own outcome, so a proof from
    /// contradictory axioms stays `InconsistentPremises` and a refutation is
    /// `NoProofFound` (the host's reading of `sat`). Without a winner the verdict
    /// decides: `proved` is `Proved`, `refuted` and `unknown` are `NoProofFound`,
    /// `timeout` is `Timeout`, `cancelled` is `Cancelled` with the race's reason,
    /// and `error` follows the table on `From<&ServiceError>`.
    fn from(o: &Outcome) -> Self {
        if o.verdict.is_decisive() {
            if let Some(w) = o.winning_attempt() {
                let h = HostOutcome::from(w);
                // A winner's attempt is decisive by definition; anything else
                // means the server and this crate disagree, so trust the verdict.
                if matches!(h, HostOutcome::Proved | HostOutcome::InconsistentPremises)
                    || (h == HostOutcome::NoProofFound && o.verdict == Verdict::Refuted)
                {
                    return h;
                }
            }
        }
        match &o.verdict {
            Verdict::Proved => HostOutcome::Proved,
            Verdict::Refuted | Verdict::Unknown => HostOutcome::NoProofFound,
            Verdict::Timeout => HostOutcome::Timeout,
            Verdict::Cancelled(reason) => HostOutcome::Cancelled {
                reason: reason.clone(),
            },
            Verdict::Error(e) => HostOutcome::from(e),
            Verdict::Other(_) => HostOutcome::SystemError,
        }
    }
}

impl Attempt {
    /// This attempt as the host's outcome; see `From<&Attempt> for HostOutcome`.
    pub fn host_outcome(&self) -> HostOutcome {
        HostOutcome::from(self)
    }
}

impl Outcome {
    /// The race as the host's outcome; see `From<&Outcome> for HostOutcome`.
    pub fn host_outcome(&self) -> HostOutcome {
        HostOutcome::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Answer, CancelCause, Exit, Format, Stop, Strategy};
    use std::time::Duration;

    fn attempt(prover: &str, outcome: AttemptOutcome, stop: Option<Stop>) -> Attempt {
        Attempt {
            prover: prover.into(),
            outcome,
            answer: Answer::None,
            status: String::new(),
            message: String::new(),
            stop,
            elapsed: Duration::ZERO,
            exit: Exit::Code(0),
            output_tail: String::new(),
            output_bytes: 0,
        }
    }

    fn outcome(verdict: Verdict, winner: Option<&str>, attempts: Vec<Attempt>) -> Outcome {
        Outcome {
            schema_version: 1,
            solve_id: "s".into(),
            goal_id: "g".into(),
            verdict,
            winner: winner.map(Into::into),
            strategy: Strategy::FirstWins,
            format: Format::Smtlib2,
            attempts,
            disagreement: false,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn eight_cases_map_one_to_one() {
        let cases = [
            (AttemptOutcome::Proved, HostOutcome::Proved),
            (AttemptOutcome::NoProofFound, HostOutcome::NoProofFound),
            (AttemptOutcome::InvalidInput, HostOutcome::InvalidInput),
            (
                AttemptOutcome::UnsupportedFeature,
                HostOutcome::UnsupportedFeature,
            ),
            (AttemptOutcome::Timeout, HostOutcome::Timeout),
            (
                AttemptOutcome::InconsistentPremises,
                HostOutcome::InconsistentPremises,
            ),
            (AttemptOutcome::ProverError, HostOutcome::ProverError),
            (AttemptOutcome::SystemError, HostOutcome::SystemError),
            (AttemptOutcome::Other(42), HostOutcome::SystemError),
        ];
        for (from, to) in cases {
            assert_eq!(attempt("p", from, None).host_outcome(), to, "{from:?}");
        }
    }

    #[test]
    fn cancelled_attempt_carries_its_stop_reason() {
        let reason = CancelReason {
            cause: CancelCause::Preempted,
            message: "preempted by z3".into(),
        };
        let a = attempt(
            "cvc5",
            AttemptOutcome::Cancelled,
            Some(Stop {
                reason: reason.clone(),
                latency: Duration::from_micros(2100),
                escalated: false,
            }),
        );
        assert_eq!(a.host_outcome(), HostOutcome::Cancelled { reason });
        let bare = attempt("cvc5", AttemptOutcome::Cancelled, None).host_outcome();
        assert!(matches!(
            bare,
            HostOutcome::Cancelled { reason } if reason.cause == CancelCause::Other(u16::MAX)
        ));
    }

    #[test]
    fn decided_race_takes_the_winners_case() {
        let o = outcome(
            Verdict::Proved,
            Some("eprover"),
            vec![
                attempt("SPASS", AttemptOutcome::Cancelled, None),
                attempt("eprover", AttemptOutcome::InconsistentPremises, None),
            ],
        );
        assert_eq!(o.host_outcome(), HostOutcome::InconsistentPremises);

        let refuted = outcome(
            Verdict::Refuted,
            Some("z3"),
            vec![attempt("z3", AttemptOutcome::NoProofFound, None)],
        );
        assert_eq!(refuted.host_outcome(), HostOutcome::NoProofFound);

        // A winner whose attempt contradicts the verdict does not override it.
        let odd = outcome(
            Verdict::Proved,
            Some("z3"),
            vec![attempt("z3", AttemptOutcome::ProverError, None)],
        );
        assert_eq!(odd.host_outcome(), HostOutcome::Proved);
    }

    #[test]
    fn undecided_races_follow_the_verdict() {
        let reason = CancelReason {
            cause: CancelCause::TokenDropped,
            message: String::new(),
        };
        let cases = [
            (Verdict::Unknown, HostOutcome::NoProofFound),
            (Verdict::Timeout, HostOutcome::Timeout),
            (
                Verdict::Cancelled(reason.clone()),
                HostOutcome::Cancelled { reason },
            ),
            (
                Verdict::Error(ServiceError {
                    kind: ErrorKind::NoProver,
                    message: String::new(),
                }),
                HostOutcome::UnsupportedFeature,
            ),
            (
                Verdict::Error(ServiceError {
                    kind: ErrorKind::RequestTooLarge,
                    message: String::new(),
                }),
                HostOutcome::InvalidInput,
            ),
            (
                Verdict::Error(ServiceError {
                    kind: ErrorKind::UnknownProver,
                    message: String::new(),
                }),
                HostOutcome::SystemError,
            ),
            (Verdict::Other(9), HostOutcome::SystemError),
        ];
        for (verdict, want) in cases {
            let o = outcome(verdict.clone(), None, vec![]);
            assert_eq!(o.host_outcome(), want, "{verdict:?}");
        }
    }
}
