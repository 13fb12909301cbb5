//! The connection, the solve handle and the drop guard.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use capnp::capability::{FromClientHook, Promise, Response};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, Disconnector, RpcSystem};
use futures::channel::oneshot;
use futures::io::{AsyncRead, AsyncWrite, BufReader, BufWriter};
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::proofrace_capnp::{cancel_token, dispatcher};
use crate::types::{Outcome, ProverInfo, SolveRequest, SolveStatus};

/// Everything that can go wrong in this crate.
#[derive(Debug)]
pub enum Error {
    /// The address is neither `host:port` nor `unix:/path`.
    Address(String),
    /// The connection could not be opened.
    Connect(std::io::Error),
    /// A call failed: the connection broke, the server raised, or a message
    /// could not be read or written.
    Rpc(capnp::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Address(a) => write!(f, "bad address {a:?}: want host:port or unix:/path"),
            Error::Connect(e) => write!(f, "cannot connect: {e}"),
            Error::Rpc(e) => write!(f, "rpc failed: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Address(_) => None,
            Error::Connect(e) => Some(e),
            Error::Rpc(e) => Some(e),
        }
    }
}

impl From<capnp::Error> for Error {
    fn from(e: capnp::Error) -> Self {
        Error::Rpc(e)
    }
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// What every clone of the client and every live handle share: the connection's
/// lifetime. When the last one goes, the driver task closes the connection.
struct Connection {
    disconnector: RefCell<Option<Disconnector<Side>>>,
    // Never sent on: dropping it is the signal.
    _last_user_gone: oneshot::Sender<()>,
}

/// A connection to a proofrace server.
///
/// # Runs on a `LocalSet`
///
/// `capnp-rpc` is single-threaded: its capabilities are `Rc`-based and `!Send`.
/// [`Client::connect`] spawns the RPC machinery with
/// [`tokio::task::spawn_local`], so it must be called from inside a
/// [`tokio::task::LocalSet`] (it panics otherwise), and the client, its
/// handles and their futures stay on that thread:
///
/// ```no_run
/// use proofrace_client::{Client, SolveRequest};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
///     let local = tokio::task::LocalSet::new();
///     local.block_on(&runtime, async {
///         let client = Client::connect("127.0.0.1:7340").await?;
///         let problem = std::fs::read("samples/distinct.smt2")?;
///         let outcome = client.solve(SolveRequest::new(problem)).result().await?;
///         println!("{:?} by {:?}", outcome.verdict, outcome.winner);
///         Ok(())
///     })
/// }
/// ```
///
/// Clones share one connection. It closes when the client, every clone and
/// every [`SolveHandle`] are gone (queued messages, such as the release of a
/// dropped token, are sent first), at once with [`Client::disconnect`], or when
/// the `LocalSet` is dropped. The server cancels every race still tied to a
/// closed connection (cause `disconnected`).
#[derive(Clone)]
pub struct Client {
    dispatcher: dispatcher::Client,
    connection: Rc<Connection>,
}

impl Client {
    /// Connects to `addr`: `host:port` or `unix:/path`.
    ///
    /// # Panics
    ///
    /// Outside a [`tokio::task::LocalSet`] (see the type's documentation).
    pub async fn connect(addr: &str) -> Result<Client> {
        Self::connect_to(&addr.parse()?).await
    }

    /// Connects to an already parsed [`Address`].
    ///
    /// # Panics
    ///
    /// Outside a [`tokio::task::LocalSet`].
    pub async fn connect_to(addr: &Address) -> Result<Client> {
        match addr {
            Address::Tcp(a) => {
                let stream = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(Error::Connect)?;
                // Small request/answer messages: do not let Nagle hold a cancel back.
                stream.set_nodelay(true).map_err(Error::Connect)?;
                let (r, w) = stream.into_split();
                Ok(Self::start(r.compat(), w.compat_write()))
            }
            Address::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(Error::Connect)?;
                let (r, w) = stream.into_split();
                Ok(Self::start(r.compat(), w.compat_write()))
            }
        }
    }

    fn start<R, W>(reader: R, writer: W) -> Client
    where
        R: AsyncRead + Unpin + 'static,
        W: AsyncWrite + Unpin + 'static,
    {
        let network = twoparty::VatNetwork::new(
            BufReader::new(reader),
            BufWriter::new(writer),
            Side::Client,
            Default::default(),
        );
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let dispatcher: dispatcher::Client = rpc.bootstrap(Side::Server);
        let for_user = rpc.get_disconnector();
        let for_driver = rpc.get_disconnector();
        let (last_user_gone, gone) = oneshot::channel::<()>();
        tokio::task::spawn_local(drive(rpc, for_driver, gone));
        Client {
            dispatcher,
            connection: Rc::new(Connection {
                disconnector: RefCell::new(Some(for_user)),
                _last_user_gone: last_user_gone,
            }),
        }
    }

    /// The raw capability, for calls this crate does not wrap.
    pub fn dispatcher(&self) -> &dispatcher::Client {
        &self.dispatcher
    }

    /// Every prover the server knows, installed or not.
    ///
    /// Also a cheap round trip: once it answers, the server has processed every
    /// message this connection sent before it (for instance the release of a
    /// dropped [`SolveHandle`]).
    pub async fn provers(&self) -> Result<Vec<ProverInfo>> {
        let response = self.dispatcher.provers_request().send().promise.await?;
        let list = response.get()?.get_provers()?;
        Ok(list
            .iter()
            .map(ProverInfo::read)
            .collect::<capnp::Result<_>>()?)
    }

    /// Starts a race and returns its handle at once.
    ///
    /// No round trip happens here: the token is taken from the call's pipeline
    /// (promise pipelining), so [`SolveHandle::cancel`] can be sent right away
    /// and reaches the server right behind the `solve` call. Errors, including a
    /// request this crate cannot encode, surface on the handle's first call.
    ///
    /// The race lives as long as the handle: dropping it cancels the race (see
    /// [`SolveHandle`]).
    pub fn solve(&self, request: SolveRequest) -> SolveHandle {
        let mut call = self.dispatcher.solve_request();
        let written = request.write(call.get().init_request());
        let conn = self.connection.clone();
        match written {
            Ok(()) => {
                let sent = call.send();
                SolveHandle {
                    token: sent.pipeline.get_token(),
                    _pipeline: Some(sent.pipeline),
                    _answer: Some(sent.promise),
                    _connection: conn,
                }
            }
            Err(e) => SolveHandle {
                token: cancel_token::Client::new(capnp_rpc::new_broken_cap(e).hook),
                _pipeline: None,
                _answer: None,
                _connection: conn,
            },
        }
    }

    /// Closes the connection now, without waiting for other users of it.
    ///
    /// The server cancels every race still tied to this connection (cause
    /// `disconnected`); calls on surviving clones and handles fail.
    pub async fn disconnect(self) -> Result<()> {
        let disconnector = self.connection.disconnector.borrow_mut().take();
        if let Some(d) = disconnector {
            d.await?;
        }
        Ok(())
    }
}

/// Runs the RPC system until the connection ends, or until the last client and
/// handle are gone; then closes it through the disconnector rather than by dropping
/// the socket, so that messages already queued (such as the Release of the token
/// just dropped) are written ahead of the Abort instead of being lost.
async fn drive(
    rpc: RpcSystem<Side>,
    disconnector: Disconnector<Side>,
    gone: oneshot::Receiver<()>,
) {
    let mut rpc = rpc;
    tokio::select! {
        _ = &mut rpc => return,
        _ = gone => {}
    }
    let _ = futures::future::join(disconnector, rpc).await;
}

/// A running race, and the guard that stops it.
///
/// The handle owns the race's `CancelToken` capability (obtained by pipelining,
/// so it exists before the server has answered `solve`), together with the
/// `solve` call's pending answer, which keeps that call open on the server.
///
/// # Dropping the handle cancels the race
///
/// Like [`tokio_util::sync::CancellationToken::drop_guard`], the handle is a
/// drop guard: dropping it releases every reference this process holds to the
/// token (a Cap'n Proto `Release` for the token and a `Finish` for the `solve`
/// call, both queued at the moment of the drop and sent in order on the
/// connection). When the server sees the last reference go while no `result()`
/// call waits, it cancels the race with cause `tokenDropped`: every attempt still
/// running is killed (its whole process group) and reaped. A race that already
/// finished is not affected. A handle dropped before the server has answered
/// `solve` cancels the call itself: the race may then never start at all.
///
/// The messages are written by the connection's task on the `LocalSet`. To be sure
/// the server has acted on them (before the process exits, say), make one more
/// call on the same connection, e.g. [`Client::provers`]: it is answered only
/// after the server has read them. Without that round trip, if the connection
/// closes at about the same time (the process exits, or the handle was the
/// connection's last user), the race is still cancelled, but the server may
/// record the cause as `disconnected` instead of `tokenDropped`.
///
/// To keep a race running, keep its handle. Awaiting [`SolveHandle::result`]
/// borrows the handle, so the race cannot be dropped while its result is awaited.
pub struct SolveHandle {
    // Field order is drop order: the token first, then what keeps the question open.
    token: cancel_token::Client,
    _pipeline: Option<dispatcher::solve_results::Pipeline>,
    // Held, never awaited: with the pipeline it keeps the `solve` question open
    // (no Finish) for as long as the handle lives, whatever the server's timing.
    _answer: Option<Promise<Response<dispatcher::solve_results::Owned>, capnp::Error>>,
    _connection: Rc<Connection>,
}

impl SolveHandle {
    /// Asks the server to cancel the race (cause `client`, with `reason` as the
    /// message) and returns the status right after the cancel was *called*.
    ///
    /// Idempotent: the first cause to end a race is the one reported. The attempts
    /// are being stopped when this returns; [`SolveHandle::result`] answers once
    /// every one is reaped.
    ///
    /// Await the returned future: a call abandoned before it is sent, or whose
    /// future is dropped before the server answers, may never run.
    pub async fn cancel(&self, reason: &str) -> Result<SolveStatus> {
        let mut call = self.token.cancel_request();
        call.get().set_reason(reason);
        let response = call.send().promise.await?;
        Ok(SolveStatus::read(response.get()?.get_status()?)?)
    }

    /// Waits until every attempt has been reaped, and returns the outcome.
    ///
    /// While this waits, dropping the handle is impossible (it is borrowed), so
    /// the race is not cancelled by `tokenDropped`.
    pub async fn result(&self) -> Result<Outcome> {
        let response = self.token.result_request().send().promise.await?;
        Ok(Outcome::read(response.get()?.get_outcome()?)?)
    }

    /// A snapshot of the race; never waits on the race.
    pub async fn status(&self) -> Result<SolveStatus> {
        let response = self.token.status_request().send().promise.await?;
        Ok(SolveStatus::read(response.get()?.get_status()?)?)
    }

    /// The raw token capability.
    ///
    /// A clone of it is another reference: the race is then cancelled on drop
    /// only when the handle *and* every clone are gone.
    pub fn token(&self) -> &cancel_token::Client {
        &self.token
    }
}

impl fmt::Debug for SolveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolveHandle").finish_non_exhaustive()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
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
        assert_eq!(
            "[::1]:7777".parse::<Address>().unwrap(),
            Address::Tcp("[::1]:7777".into())
        );
        assert_eq!(
            "unix:/run/proofrace.sock".parse::<Address>().unwrap(),
            Address::Unix("/run/proofrace.sock".into())
        );
        for bad in ["", "localhost", "localhost:", ":80", "host:99999", "unix:"] {
            assert!(bad.parse::<Address>().is_err(), "{bad:?} parsed");
        }
    }
}
