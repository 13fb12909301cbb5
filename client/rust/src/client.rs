//! The public client and solve handle: `Send + Sync`, usable from any tokio runtime.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::options::{Address, Keepalive, Options, Reconnect, Tls};
use crate::types::{Outcome, ProverInfo, SolveRequest, SolveStatus, Verdict};
use crate::worker::{self, Call, Command, Reply};

/// What every clone of a client and every handle share: the way to the RPC thread.
/// When the last one goes, the RPC thread closes the connection and ends.
struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    addr: Address,
}

impl Inner {
    fn send(&self, command: Command) {
        // Fails only when the RPC thread is gone; the reply channel then says `Closed`.
        let _ = self.commands.send(command);
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply));
        answer.await.unwrap_or(Err(Error::Closed))
    }
}

/// A connection to a proofrace server: `Send + Sync + Clone`.
///
/// The Cap'n Proto RPC system runs on a thread this client owns (a current-thread
/// tokio runtime with a `LocalSet`); callers never see it. Any runtime, any
/// thread, any task may use the client and its handles: they only queue commands
/// for that thread and await its answers.
///
/// Clones share one connection. It is dialled by [`Client::connect`], and again
/// (with back-off, see [`Reconnect`]) by the first call after it was lost. It
/// closes, and the thread ends, when the client, its clones and every
/// [`SolveHandle`] are gone (after [detached](SolveHandle::detach) races end), or
/// at once with [`Client::close`]. The server cancels every race still tied to a
/// closed connection (cause `disconnected`).
///
/// ```no_run
/// use proofrace_client::{Client, SolveRequest};
///
/// #[tokio::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let client = Client::connect("127.0.0.1:7340").await?;
///     let problem = std::fs::read("samples/distinct.smt2")?;
///     let outcome = client.solve(SolveRequest::new(problem)).result().await?;
///     println!("{} by {:?}", outcome.verdict, outcome.winner);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Connection options for [`Client`]; see [`Client::builder`].
///
/// ```no_run
/// use proofrace_client::{Client, Keepalive, Tls};
/// use std::time::Duration;
///
/// # async fn demo() -> proofrace_client::Result<()> {
/// let client = Client::builder("prover-farm.internal:7340")
///     .tls(Tls::with_ca("/etc/proofrace/ca.pem")
///         .client_certificate("/etc/proofrace/host.pem", "/etc/proofrace/host.key"))
///     .credential(std::env::var("PROOFRACE_SECRET").unwrap_or_default())
///     .connect_timeout(Duration::from_secs(3))
///     .keepalive(Keepalive::FollowServer)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until connect() is awaited"]
pub struct Builder {
    addr: String,
    options: Options,
}

impl Builder {
    /// Log in with this credential (the server's `Gate.login`) on every connection.
    pub fn credential(mut self, credential: impl Into<String>) -> Self {
        self.options.credential = Some(credential.into());
        self
    }

    /// Use TLS (TCP addresses only).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.options.tls = Some(tls);
        self
    }

    /// Bound on one dial: connect, TLS handshake, login and first ping (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// See [`Keepalive`] (default: follow the server's idle timeout).
    pub fn keepalive(mut self, keepalive: Keepalive) -> Self {
        self.options.keepalive = keepalive;
        self
    }

    /// See [`Reconnect`] (default: 5 dials, 100 ms doubling up to 5 s).
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.options.reconnect = reconnect;
        self
    }

    /// Starts the client's RPC thread and dials once: logs in if a credential was
    /// given, and asks the server for its idle timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Address`], [`Error::Tls`], [`Error::Connect`] (also for a
    /// timeout or a failed TLS handshake), [`Error::LoginRequired`],
    /// [`Error::LoginRefused`].
    pub async fn connect(self) -> Result<Client> {
        let addr: Address = self.addr.parse()?;
        if self.options.tls.is_some() && matches!(addr, Address::Unix(_)) {
            return Err(Error::Tls("TLS needs a TCP address".into()));
        }
        let commands = worker::start(addr.clone(), self.options)?;
        let client = Client {
            inner: Arc::new(Inner {
                commands,
                next_id: AtomicU64::new(0),
                addr,
            }),
        };
        client.inner.ask(Command::Connect).await?;
        Ok(client)
    }
}

impl Client {
    /// Connects to `addr` (`host:port` or `unix:/path`) with the default options.
    pub async fn connect(addr: &str) -> Result<Client> {
        Client::builder(addr).connect().await
    }

    /// Options for a connection to `addr`: TLS, credential, timeouts, keepalive.
    pub fn builder(addr: &str) -> Builder {
        Builder {
            addr: addr.to_owned(),
            options: Options::default(),
        }
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.inner.addr
    }

    /// Every prover the server knows, installed or not.
    ///
    /// Also a round trip on the connection: once it answers, the server has read
    /// everything sent before it (such as the release of a dropped handle).
    pub async fn provers(&self) -> Result<Vec<ProverInfo>> {
        self.inner.ask(Command::Provers).await
    }

    /// A sign of life; answers the server's idle timeout (zero: none).
    pub async fn ping(&self) -> Result<Duration> {
        let ms = self.inner.ask(Command::Ping).await?;
        Ok(Duration::from_millis(u64::from(ms)))
    }

    /// Starts a race and returns its handle at once.
    ///
    /// No round trip happens here: the command is queued for the RPC thread, which
    /// sends `solve` and takes the token from the call's pipeline, so a
    /// [`SolveHandle::cancel`] issued right away reaches the server right behind
    /// the `solve` call. With no live connection, the RPC thread dials first (see
    /// [`Reconnect`]); errors surface on the handle's first call.
    pub fn solve(&self, request: SolveRequest) -> SolveHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.send(Command::Solve {
            id,
            request: Box::new(request),
        });
        SolveHandle {
            inner: self.inner.clone(),
            id,
            detached: false,
        }
    }

    /// Closes the connection now, whoever else uses it, and waits until it is closed.
    ///
    /// The server cancels every race still tied to it (cause `disconnected`);
    /// later calls on this client, its clones and its handles fail with
    /// [`Error::Closed`]. Dropping every clone and handle closes the connection
    /// too; this is for when that cannot wait.
    pub async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        self.inner.send(Command::Close(reply));
        let _ = closed.await;
    }
}

/// A running race, and the guard that stops it. `Send + Sync`.
///
/// # Dropping the handle cancels the race
///
/// Dropping the handle queues, at once, the release of the race's token: the RPC
/// thread first abandons this handle's `result()` and `status()` calls still in
/// flight, then releases every reference it holds to the token. The server then
/// sees the last reference go with no `result()` waiting and cancels the race
/// (cause `tokenDropped`): every attempt still running is killed (its whole
/// process group) and reaped. That holds whatever the handle was doing: awaited
/// in a task that is aborted, raced in a `select!` that took another branch, or
/// dropped by an HTTP framework when its client went away. A race that already
/// finished is not affected.
///
/// To let a race run to its end without keeping the handle, call
/// [`SolveHandle::detach`].
#[must_use = "dropping a SolveHandle cancels its race"]
pub struct SolveHandle {
    inner: Arc<Inner>,
    id: u64,
    detached: bool,
}

impl SolveHandle {
    fn ask(&self, call: Call) -> oneshot::Receiver<Result<Reply>> {
        let (reply, answer) = oneshot::channel();
        self.inner.send(Command::Call {
            id: self.id,
            call,
            reply,
        });
        answer
    }

    /// Waits until every attempt has been reaped, and returns the outcome.
    ///
    /// Cancel-safe: dropping the future abandons this call only (the race goes on
    /// while the handle lives); call it again to wait again.
    ///
    /// A refusal of the request itself is an error: [`Error::Overloaded`],
    /// [`Error::InvalidRequest`], [`Error::Server`]. Anything about the problem
    /// (the provers rejected it, every attempt failed, nothing reads its format)
    /// is an [`Outcome`] with [`Verdict::Error`], for [`HostOutcome`](crate::HostOutcome)
    /// to map. A lost connection is [`Error::Disconnected`].
    pub async fn result(&self) -> Result<Outcome> {
        match self.ask(Call::Result).await {
            Ok(Ok(Reply::Outcome(outcome))) => match &outcome.verdict {
                Verdict::Error(e) => match Error::from_refusal(e) {
                    Some(refused) => Err(refused),
                    None => Ok(outcome),
                },
                _ => Ok(outcome),
            },
            Ok(Ok(Reply::Status(_))) => Err(Error::Rpc(capnp::Error::failed(
                "a status where an outcome was due".into(),
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// A snapshot of the race; never waits on the race. Cancel-safe.
    pub async fn status(&self) -> Result<SolveStatus> {
        status_of(self.ask(Call::Status).await)
    }

    /// Asks the server to cancel the race (cause `client`, with `reason` as the
    /// message), and returns a future of the status right after the cancel was
    /// *called*.
    ///
    /// The cancel is queued when this method is called, not when the future is
    /// first polled, and it is sent and answered whether or not the future is
    /// awaited: dropping it (a `select!` that took another branch, a timeout) does
    /// not undo the cancel. The future is `Send + 'static`.
    ///
    /// Idempotent: the first cause to end a race is the one reported.
    /// [`SolveHandle::result`] answers once every attempt is reaped.
    pub fn cancel(
        &self,
        reason: impl Into<String>,
    ) -> impl Future<Output = Result<SolveStatus>> + Send + 'static {
        let answer = self.ask(Call::Cancel(reason.into()));
        async move { status_of(answer.await) }
    }

    /// Lets the race run to its end without this handle: the RPC thread keeps the
    /// token (waiting on `result()` for it) until the race is over, then releases
    /// it. The connection stays open meanwhile, even if every client is dropped,
    /// as long as the process lives.
    pub fn detach(mut self) {
        self.detached = true;
        self.inner.send(Command::Detach { id: self.id });
    }
}

fn status_of(
    answer: std::result::Result<Result<Reply>, oneshot::error::RecvError>,
) -> Result<SolveStatus> {
    match answer {
        Ok(Ok(Reply::Status(status))) => Ok(status),
        Ok(Ok(Reply::Outcome(_))) => Err(Error::Rpc(capnp::Error::failed(
            "an outcome where a status was due".into(),
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Closed),
    }
}

impl Drop for SolveHandle {
    fn drop(&mut self) {
        if !self.detached {
            self.inner.send(Command::Release { id: self.id });
        }
    }
}

impl fmt::Debug for SolveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolveHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn clients_handles_and_their_futures_cross_threads() {
        send_sync::<Client>();
        send_sync::<SolveHandle>();
        send_sync::<Error>();
        // Never polled: only their types matter.
        let (commands, _inbox) = mpsc::unbounded_channel();
        let client = Client {
            inner: Arc::new(Inner {
                commands,
                next_id: AtomicU64::new(0),
                addr: Address::Tcp("127.0.0.1:1".into()),
            }),
        };
        let handle = client.solve(SolveRequest::new(Vec::new()));
        send(&handle.result());
        send(&handle.status());
        send(&handle.cancel("r"));
        send(&client.provers());
        send(&client.close());
        send(&Client::connect("127.0.0.1:1"));
    }
}
