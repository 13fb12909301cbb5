//! A Rust client for proofrace, the service that races theorem provers and
//! SAT/SMT solvers on one problem and preempts the losers at once.
//!
//! The service speaks Cap'n Proto RPC (`schemas/proofrace.capnp` in the
//! repository). This crate wraps it in plain Rust:
//!
//! * [`Client::connect`] opens a connection (`host:port` or `unix:/path`). The
//!   RPC runtime is single-threaded: run it inside a [`tokio::task::LocalSet`].
//! * [`Client::solve`] starts a race and returns a [`SolveHandle`] without a
//!   round trip; the handle can cancel at once.
//! * [`SolveHandle::result`], [`SolveHandle::status`] and [`SolveHandle::cancel`]
//!   return plain values: [`Outcome`], [`SolveStatus`].
//! * Dropping a [`SolveHandle`] cancels its race on the server (cause
//!   `tokenDropped`): the handle is a drop guard.
//! * [`HostOutcome`] folds an attempt or a whole outcome into the echidna host's
//!   eight-case prover outcome, plus `Cancelled { reason }`.
//!
//! ```no_run
//! use proofrace_client::{CancelCause, Client, HostOutcome, SolveRequest, Verdict};
//!
//! # async fn demo() -> proofrace_client::Result<()> {
//! // Inside a LocalSet (see `Client`).
//! let client = Client::connect("unix:/run/proofrace.sock").await?;
//! let problem = std::fs::read("samples/pigeonhole-12.smt2").unwrap();
//! let handle = client.solve(SolveRequest::new(problem).prover("z3").prover("cvc5"));
//! handle.cancel("the user pressed stop").await?;
//! let outcome = handle.result().await?;
//! assert!(matches!(outcome.verdict, Verdict::Cancelled(ref r) if r.cause == CancelCause::Client));
//! assert!(matches!(outcome.host_outcome(), HostOutcome::Cancelled { .. }));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

/// The code `capnpc` generates from `schemas/proofrace.capnp`, for direct use
/// of the capabilities (see [`Client::dispatcher`] and [`SolveHandle::token`]).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proofrace_capnp {
    include!(concat!(env!("OUT_DIR"), "/proofrace_capnp.rs"));
}

mod client;
mod host;
mod types;

pub use client::{Address, Client, Error, Result, SolveHandle};
pub use host::HostOutcome;
pub use types::{
    Answer, Attempt, AttemptOutcome, AttemptState, AttemptStatus, CancelCause, CancelReason,
    ErrorKind, Exit, Format, Outcome, ProverInfo, ServiceError, SolveRequest, SolveState,
    SolveStatus, Stop, Strategy, Verdict,
};

/// The schema version this crate writes in requests.
pub const SCHEMA_VERSION: u16 = proofrace_capnp::CURRENT_SCHEMA_VERSION;
