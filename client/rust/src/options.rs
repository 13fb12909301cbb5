//! Where and how to connect: address, TLS, credential, timeouts, keepalive, reconnection.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where the server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `host:port`, resolved by the system resolver.
    Tcp(String),
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
}

impl std::str::FromStr for Address {
    type Err = Error;

    /// Parses `host:port`, `[v6]:port` or `unix:/path`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(Error::Address(s.into()));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Address::Tcp(s.into()))
            }
            _ => Err(Error::Address(s.into())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Address {
    /// The host part of a TCP address, without brackets (for TLS server names).
    pub(crate) fn host(&self) -> Option<&str> {
        match self {
            Address::Tcp(a) => {
                let host = a.rsplit_once(':').map(|(h, _)| h)?;
                Some(host.trim_start_matches('[').trim_end_matches(']'))
            }
            Address::Unix(_) => None,
        }
    }
}

/// TLS for a TCP connection: the CA to check the server against and, for mutual
/// TLS, the client's own certificate chain and key. All files are PEM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificates that may sign the server's certificate.
    pub ca: PathBuf,
    /// The client's certificate chain and its private key, when the server asks for one.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; by default the address's host
    /// (an IP address is checked against the certificate's IP entries).
    pub server_name: Option<String>,
}

impl Tls {
    /// Trust the CA certificates in `ca` (PEM).
    pub fn with_ca(ca: impl Into<PathBuf>) -> Tls {
        Tls {
            ca: ca.into(),
            ..Tls::default()
        }
    }

    /// Present this certificate chain and key (both PEM) to the server (mutual TLS).
    pub fn client_certificate(mut self, chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Tls {
        self.client_identity = Some((chain.into(), key.into()));
        self
    }

    /// Check the server's certificate against this name instead of the address's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Tls {
        self.server_name = Some(name.into());
        self
    }
}

/// How the client keeps an idle connection open and notices a dead one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keepalive {
    /// Ask the server (`ping()`) for its idle timeout once connected, and ping
    /// three times per timeout. A server without an idle timeout gets no pings.
    #[default]
    FollowServer,
    /// Ping at this interval whatever the server says. A ping unanswered for
    /// twice the interval (or the server's idle timeout, if longer) closes the
    /// connection: calls in flight fail with [`Error::Disconnected`].
    Every(Duration),
    /// Never ping.
    Off,
}

/// Reconnection for new calls after the connection was lost.
///
/// A call made while there is no connection (a solve, `provers()`...) dials
/// again, up to `attempts` times, waiting `initial_backoff` after the first
/// failure and doubling the wait up to `max_backoff`. Calls in flight on a lost
/// connection are never replayed: they fail with [`Error::Disconnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// Dials per call (at least 1).
    pub attempts: u32,
    /// Wait after the first failed dial.
    pub initial_backoff: Duration,
    /// Longest wait between dials.
    pub max_backoff: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Reconnect {
    /// Dial once, never wait.
    pub fn never() -> Reconnect {
        Reconnect {
            attempts: 1,
            ..Reconnect::default()
        }
    }

    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Everything about a connection except the address. Built by [`Builder`](crate::Builder).
#[derive(Clone, Debug)]
pub struct Options {
    /// Sent through `Gate.login` before anything else.
    pub credential: Option<String>,
    /// TLS for TCP addresses.
    pub tls: Option<Tls>,
    /// Bound on one dial: TCP connect, TLS handshake, login and the first ping.
    pub connect_timeout: Duration,
    /// See [`Keepalive`].
    pub keepalive: Keepalive,
    /// See [`Reconnect`].
    pub reconnect: Reconnect,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            credential: None,
            tls: None,
            connect_timeout: Duration::from_secs(10),
            keepalive: Keepalive::default(),
            reconnect: Reconnect::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "127.0.0.1:7340".parse::<Address>().unwrap(),
            Address::Tcp("127.0.0.1:7340".into())
        );
        assert_eq!("[::1]:7777".parse::<Address>().unwrap().host(), Some("::1"));
        assert_eq!(
            "unix:/run/proofrace.sock".parse::<Address>().unwrap(),
            Address::Unix("/run/proofrace.sock".into())
        );
        for bad in ["", "localhost", "localhost:", ":80", "host:99999", "unix:"] {
            assert!(bad.parse::<Address>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = Reconnect {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        let waits: Vec<_> = (1..=5).map(|n| r.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 700, 700]);
        assert_eq!(r.backoff(200), Duration::from_millis(700));
    }
}
