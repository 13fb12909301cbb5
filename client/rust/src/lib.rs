//! A Rust client for proofrace, the service that races theorem provers and
//! SAT/SMT solvers on one problem and preempts the losers at once.
//!
//! The service speaks Cap'n Proto RPC; this crate wraps it in plain, `Send`
//! Rust for multi-threaded tokio programs:
//!
//! * [`Client`] is `Send + Sync + Clone`. The RPC system runs on a thread the
//!   client owns; no `LocalSet` is needed. [`Client::builder`] sets TLS (with a
//!   client certificate), the login credential, the connect timeout, keepalive
//!   and reconnection.
//! * [`Client::solve`] starts a race and returns a [`SolveHandle`] at once.
//!   Dropping the handle cancels the race on the server (cause `tokenDropped`),
//!   whatever it was doing; [`SolveHandle::cancel`] takes effect once called;
//!   [`SolveHandle::detach`] lets the race finish on its own.
//! * Results are plain values: [`Outcome`], [`SolveStatus`]. [`HostOutcome`]
//!   maps them onto the echidna host's eight cases, with their data, plus
//!   `Cancelled`.
//! * [`Error`] says what a caller can do: reconnect, retry later, fix the request.
//!
//! # Racing a goal in an axum handler
//!
//! The handler's future is dropped when the HTTP client goes away; the handle
//! goes with it, and so does the race (its provers are killed and reaped):
//!
//! ```no_run
//! use axum::{extract::State, http::StatusCode, routing::post, Router};
//! use proofrace_client::{Client, Error, HostOutcome, SolveRequest};
//!
//! async fn prove(State(client): State<Client>, goal: String) -> Result<String, StatusCode> {
//!     let handle = client.solve(SolveRequest::new(goal).prover("z3").prover("cvc5"));
//!     // If the HTTP client disconnects here, axum drops this future: the handle
//!     // is dropped and the server cancels the race (cause `tokenDropped`).
//!     match handle.result().await {
//!         Ok(outcome) => match outcome.host_outcome() {
//!             HostOutcome::Proved { prover, .. } => Ok(format!("proved by {prover}")),
//!             other => Ok(other.to_string()),
//!         },
//!         Err(e) if e.is_retryable() => Err(StatusCode::SERVICE_UNAVAILABLE),
//!         Err(Error::InvalidRequest(_)) => Err(StatusCode::BAD_REQUEST),
//!         Err(_) => Err(StatusCode::BAD_GATEWAY),
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let client = Client::connect("unix:/run/user/1000/proofrace/proofrace.sock").await?;
//!     let app = Router::new().route("/prove", post(prove)).with_state(client);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! # Cancelling
//!
//! ```no_run
//! use proofrace_client::{CancelCause, Client, HostOutcome, SolveRequest, Verdict};
//! use std::time::Duration;
//!
//! # async fn demo() -> proofrace_client::Result<()> {
//! let client = Client::connect("127.0.0.1:7340").await?;
//! let problem = std::fs::read("samples/pigeonhole-12.smt2").unwrap();
//! let handle = client.solve(SolveRequest::new(problem).prover("z3").prover("cvc5"));
//! tokio::select! {
//!     outcome = handle.result() => println!("{}", outcome?.host_outcome()),
//!     _ = tokio::time::sleep(Duration::from_secs(5)) => {
//!         // Queued at once; awaiting it is optional.
//!         drop(handle.cancel("the user pressed stop"));
//!         let outcome = handle.result().await?;
//!         assert!(matches!(outcome.verdict, Verdict::Cancelled(ref r) if r.cause == CancelCause::Client));
//!         assert!(matches!(outcome.host_outcome(), HostOutcome::Cancelled { .. }));
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

/// The code `capnpc` generates from the crate's copy of `proofrace.capnp`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proofrace_capnp {
    include!(concat!(env!("OUT_DIR"), "/proofrace_capnp.rs"));
}

/// The `capnp` crate this client is built on, for its error type ([`Error::Rpc`]).
pub use capnp;

mod client;
mod error;
mod host;
mod options;
mod transport;
mod types;
mod worker;

pub use client::{Builder, Client, SolveHandle};
pub use error::{Error, Result};
pub use host::{HostOutcome, Location};
pub use options::{Address, Keepalive, Options, Reconnect, Tls};
pub use types::{
    Answer, Attempt, AttemptOutcome, AttemptState, AttemptStatus, CacheHit, CachePolicy,
    CancelCause, CancelReason, Conflict, ErrorKind, Exit, Format, Grounds, Outcome, ProverInfo,
    ServiceError, SolveRequest, SolveState, SolveStatus, Source, Stop, Strategy, Verdict,
};

/// The schema version this crate writes in requests.
pub const SCHEMA_VERSION: u16 = proofrace_capnp::CURRENT_SCHEMA_VERSION;

/// The crate's copy of the service contract, as compiled (kept byte-identical to
/// the repository's `schemas/proofrace.capnp` by a test).
pub const SCHEMA: &str = include_str!("../schema/proofrace.capnp");
