//! Errors a host can act on.

use std::fmt;
use std::sync::Arc;

use crate::types::{ErrorKind, ServiceError};

/// Everything that can go wrong in this crate.
///
/// Each variant says what a caller can do about it; [`Error::is_retryable`] sums
/// that up. Refusals that concern the problem itself (the provers rejected it, no
/// prover reads its format...) are not errors: they are [`Verdict::Error`](crate::Verdict)
/// values inside an [`Outcome`](crate::Outcome), mapped to the host's cases by
/// [`HostOutcome`](crate::HostOutcome).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The address is neither `host:port` nor `unix:/path`. Fix the configuration.
    Address(String),
    /// The TLS settings could not be used (unreadable file, no certificate in it,
    /// a key that does not match...). Fix the configuration.
    Tls(String),
    /// No connection could be opened (refused, unreachable, timed out, or the TLS
    /// handshake failed), after the reconnection attempts the options allow.
    /// Retryable.
    Connect {
        /// Where the client tried to connect.
        addr: String,
        /// Why it failed.
        source: Arc<std::io::Error>,
    },
    /// The server requires a login and the client has no credential.
    LoginRequired,
    /// The server refused the credential. Retrying with the same one is pointless
    /// (and a server drops a peer after a few refusals).
    LoginRefused(String),
    /// The connection was lost (the server stopped or restarted, the network
    /// failed, a keepalive went unanswered) while a call was in flight. The race
    /// of a handle whose connection was lost is cancelled by the server (cause
    /// `disconnected`). Retryable: new solves reconnect.
    Disconnected(String),
    /// The server has too many solves in flight (on this connection or in all).
    /// Retryable, after a pause.
    Overloaded(String),
    /// The request cannot be served as sent: it contradicts itself, names a
    /// prover the server does not know or cannot run now, is too large, or the
    /// credential does not grant it. [`ServiceError::kind`] says which;
    /// only `proverUnavailable` is worth retrying (workers may still be starting).
    InvalidRequest(ServiceError),
    /// The server failed unexpectedly; the message names its log entry. Retryable.
    Server(String),
    /// [`Client::close`](crate::Client::close) was called, or the client's
    /// RPC thread could not start.
    Closed,
    /// Any other failure of a call (a malformed message, a server older than
    /// the call...). The `capnp` error is kept for diagnosis.
    Rpc(capnp::Error),
}

impl Error {
    /// True when the same call may succeed later without changing it: a failed
    /// connection, a lost one, an overloaded server, a prover not available yet,
    /// an unexpected server fault.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Disconnected(_)
            | Error::Overloaded(_)
            | Error::Server(_) => true,
            Error::InvalidRequest(e) => e.kind == ErrorKind::ProverUnavailable,
            Error::Rpc(e) => matches!(
                e.kind,
                capnp::ErrorKind::Disconnected | capnp::ErrorKind::Overloaded
            ),
            Error::Address(_)
            | Error::Tls(_)
            | Error::LoginRequired
            | Error::LoginRefused(_)
            | Error::Closed => false,
        }
    }

    /// True when the connection was lost under the call.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected(_))
    }

    pub(crate) fn connect(addr: &str, source: std::io::Error) -> Error {
        Error::Connect {
            addr: addr.to_owned(),
            source: Arc::new(source),
        }
    }

    /// A refusal carried in an outcome's `error` verdict, when it concerns the
    /// request rather than the problem; `None` for the problem's own errors.
    pub(crate) fn from_refusal(e: &ServiceError) -> Option<Error> {
        match e.kind {
            ErrorKind::Overloaded => Some(Error::Overloaded(e.message.clone())),
            ErrorKind::Internal => Some(Error::Server(e.message.clone())),
            ErrorKind::InvalidRequest
            | ErrorKind::UnknownProver
            | ErrorKind::ProverUnavailable
            | ErrorKind::RequestTooLarge
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden => Some(Error::InvalidRequest(e.clone())),
            ErrorKind::UnsupportedFormat
            | ErrorKind::InvalidInput
            | ErrorKind::ProverError
            | ErrorKind::SystemError
            | ErrorKind::NoProver
            | ErrorKind::Other(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Address(a) => write!(f, "bad address {a:?}: want host:port or unix:/path"),
            Error::Tls(e) => write!(f, "TLS settings: {e}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::LoginRequired => f.write_str("the server requires a login credential"),
            Error::LoginRefused(m) => write!(f, "login refused: {m}"),
            Error::Disconnected(m) => write!(f, "disconnected: {m}"),
            Error::Overloaded(m) => write!(f, "server overloaded: {m}"),
            Error::InvalidRequest(e) => write!(f, "request refused ({}): {}", e.kind, e.message),
            Error::Server(m) => write!(f, "server fault: {m}"),
            Error::Closed => f.write_str("the client is closed"),
            Error::Rpc(e) => write!(f, "rpc failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source.as_ref()),
            Error::Rpc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<capnp::Error> for Error {
    /// Lost connections and overload keep their meaning; the rest is [`Error::Rpc`].
    fn from(e: capnp::Error) -> Self {
        match e.kind {
            capnp::ErrorKind::Disconnected => Error::Disconnected(e.extra),
            capnp::ErrorKind::Overloaded => Error::Overloaded(e.extra),
            _ => Error::Rpc(e),
        }
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_overload_are_told_apart_and_retryable() {
        let lost = Error::from(capnp::Error::disconnected("peer gone".into()));
        assert!(matches!(lost, Error::Disconnected(ref m) if m == "peer gone"));
        assert!(lost.is_retryable() && lost.is_disconnected());
        assert!(Error::from(capnp::Error::overloaded("busy".into())).is_retryable());
        assert!(!Error::from(capnp::Error::failed("bad".into())).is_retryable());
        assert!(!Error::LoginRefused("no".into()).is_retryable());
        let unavailable = ServiceError {
            kind: ErrorKind::ProverUnavailable,
            message: String::new(),
        };
        assert!(Error::from_refusal(&unavailable).unwrap().is_retryable());
        let invalid = ServiceError {
            kind: ErrorKind::InvalidRequest,
            message: String::new(),
        };
        assert!(!Error::from_refusal(&invalid).unwrap().is_retryable());
        let input = ServiceError {
            kind: ErrorKind::InvalidInput,
            message: String::new(),
        };
        assert!(Error::from_refusal(&input).is_none());
    }
}
