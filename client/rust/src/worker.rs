//! The crate's own RPC thread.
//!
//! `capnp-rpc` is single-threaded (`Rc` inside): its connection, capabilities and
//! promises must stay on one thread. This module owns that thread: a current-thread
//! tokio runtime running a `LocalSet`, fed by a channel of [`Command`]s. Everything
//! callers hold (clients, handles, futures) is `Send` and talks to it through that
//! channel, so a command is queued the moment it is issued: a cancel takes effect
//! whether or not its future is polled again, and a handle's `Drop` releases the
//! race's token at once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use capnp::capability::{FromClientHook, Promise, Response};
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, Disconnector, RpcSystem};
use futures::future::{LocalBoxFuture, Shared};
use futures::io::{BufReader, BufWriter};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::options::{Address, Keepalive, Options};
use crate::proofrace_capnp::login_result::Which as Login;
use crate::proofrace_capnp::{cancel_token, dispatcher, gate};
use crate::transport;
use crate::types::{Outcome, ProverInfo, SolveRequest, SolveStatus};

/// What callers ask of the RPC thread.
pub(crate) enum Command {
    /// Dial now (one attempt), log in, ping.
    Connect(oneshot::Sender<Result<()>>),
    /// Start a race for handle `id`.
    Solve {
        id: u64,
        request: Box<SolveRequest>,
    },
    /// A call on handle `id`'s token.
    Call {
        id: u64,
        call: Call,
        reply: oneshot::Sender<Result<Reply>>,
    },
    /// Handle `id` was dropped: abandon its calls, release its token.
    Release {
        id: u64,
    },
    /// Handle `id` was detached: keep its token until the race is over.
    Detach {
        id: u64,
    },
    Provers(oneshot::Sender<Result<Vec<ProverInfo>>>),
    Ping(oneshot::Sender<Result<u32>>),
    Close(oneshot::Sender<()>),
}

pub(crate) enum Call {
    Result,
    Status,
    Cancel(String),
}

pub(crate) enum Reply {
    Outcome(Outcome),
    Status(SolveStatus),
}

/// Starts the RPC thread; it runs until every sender is gone and detached races ended.
pub(crate) fn start(addr: Address, options: Options) -> Result<mpsc::UnboundedSender<Command>> {
    let tls = options
        .tls
        .as_ref()
        .map(transport::tls_connector)
        .transpose()?;
    let (commands, inbox) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("proofrace-rpc".into())
        .spawn(move || {
            // Without a runtime the inbox is dropped: every call then fails with `Closed`.
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let worker = Rc::new(Worker {
                addr,
                options,
                tls,
                link: RefCell::new(Link::Down),
                solves: RefCell::default(),
                detached: RefCell::default(),
                closed: Cell::new(false),
            });
            tokio::task::LocalSet::new().block_on(&runtime, worker.run(inbox));
        })
        .map_err(|_| Error::Closed)?;
    Ok(commands)
}

type Pending = LocalBoxFuture<'static, Result<Reply>>;
type Dialing = Shared<LocalBoxFuture<'static, Result<Rc<Conn>>>>;
type TokenFuture = Shared<LocalBoxFuture<'static, Result<cancel_token::Client>>>;

struct Worker {
    addr: Address,
    options: Options,
    tls: Option<tokio_rustls::TlsConnector>,
    link: RefCell<Link>,
    solves: RefCell<HashMap<u64, Entry>>,
    detached: RefCell<Vec<JoinHandle<()>>>,
    closed: Cell<bool>,
}

enum Link {
    Down,
    Dialing(Dialing),
    Up(Rc<Conn>),
}

/// One live connection, logged in.
struct Conn {
    dispatcher: dispatcher::Client,
    disconnector: RefCell<Option<Disconnector<Side>>>,
    /// The socket under the RPC system, owned by it (see `cut`).
    fd: std::os::fd::RawFd,
    /// Turns true once the RPC system has ended, however it ended.
    ended: tokio::sync::watch::Receiver<bool>,
    lost: RefCell<Option<String>>,
    keepalive: RefCell<Option<JoinHandle<()>>>,
}

impl Conn {
    fn is_up(&self) -> bool {
        self.lost.borrow().is_none()
    }

    /// Closes the socket at once, without a goodbye: the server reads end-of-file
    /// and cancels every race of the connection as `disconnected`. Calls in flight
    /// on it fail as disconnected.
    fn cut(&self, why: &str) {
        self.lost.borrow_mut().get_or_insert_with(|| why.to_owned());
        if let Some(k) = self.keepalive.borrow_mut().take() {
            k.abort();
        }
        // Shutting the socket down (rather than sending Cap'n Proto's Abort first)
        // makes the server read end-of-file before anything else, so it records the
        // races as `disconnected`; our own reader reads end-of-file too, and the RPC
        // system fails every call in flight as disconnected.
        if !*self.ended.borrow() {
            // SAFETY: the RPC system owns the descriptor and has not ended (checked
            // just above, on the one thread that runs it), so it is still open.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
            let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Waits until the RPC system has ended.
    async fn until_ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|done| *done).await;
    }

    fn send_solve(
        &self,
        request: &SolveRequest,
        kept: &RefCell<Option<Kept>>,
    ) -> Result<cancel_token::Client> {
        let mut call = self.dispatcher.solve_request();
        request.write(call.get().init_request())?;
        let sent = call.send();
        let token = sent.pipeline.get_token();
        *kept.borrow_mut() = Some(Kept {
            _pipeline: sent.pipeline,
            _answer: sent.promise,
        });
        Ok(token)
    }
}

/// What keeps a `solve` question open on the server for as long as its handle lives.
struct Kept {
    _pipeline: dispatcher::solve_results::Pipeline,
    _answer: Promise<Response<dispatcher::solve_results::Owned>, capnp::Error>,
}

enum Token {
    Ready(Result<cancel_token::Client>),
    Waiting(TokenFuture),
}

/// The RPC thread's side of one handle.
struct Entry {
    token: Token,
    kept: Rc<RefCell<Option<Kept>>>,
    /// `result()` and `status()` calls in flight: dropped (so abandoned on the
    /// server) with the handle. Cancels are not here: they always run to the end.
    calls: Vec<Rc<RefCell<Option<Pending>>>>,
    driver: Option<JoinHandle<()>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // Order matters: the calls' Finish first, then the token's Release, so that
        // the server sees the last reference go with no result() waiting.
        for call in self.calls.drain(..) {
            call.borrow_mut().take();
        }
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
        self.token = Token::Ready(Err(Error::Closed));
        self.kept.borrow_mut().take();
    }
}

impl Worker {
    async fn run(self: Rc<Self>, mut inbox: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = inbox.recv().await {
            self.handle(command);
        }
        // Every client and handle is gone. Let detached races finish, then close.
        let detached: Vec<_> = self.detached.borrow_mut().drain(..).collect();
        for race in detached {
            let _ = race.await;
        }
        self.solves.borrow_mut().clear();
        self.close_link("the client was dropped", Closing::Graceful)
            .await;
    }

    fn handle(self: &Rc<Self>, command: Command) {
        match command {
            Command::Connect(reply) => {
                let w = self.clone();
                tokio::task::spawn_local(async move {
                    let _ = reply.send(w.connection(1).await.map(drop));
                });
            }
            Command::Solve { id, request } => self.solve(id, *request),
            Command::Call { id, call, reply } => self.call(id, call, reply),
            Command::Release { id } => {
                self.solves.borrow_mut().remove(&id);
            }
            Command::Detach { id } => self.detach(id),
            Command::Provers(reply) => {
                let w = self.clone();
                self.answer(reply, async move {
                    let conn = w.connection(w.options.reconnect.attempts).await?;
                    let response = conn.dispatcher.provers_request().send().promise.await?;
                    let list = response.get()?.get_provers()?;
                    Ok(list
                        .iter()
                        .map(ProverInfo::read)
                        .collect::<capnp::Result<_>>()?)
                });
            }
            Command::Ping(reply) => {
                let w = self.clone();
                self.answer(reply, async move {
                    let conn = w.connection(w.options.reconnect.attempts).await?;
                    let response = conn.dispatcher.ping_request().send().promise.await?;
                    Ok(response.get()?.get_idle_timeout_ms())
                });
            }
            Command::Close(reply) => {
                self.closed.set(true);
                let w = self.clone();
                tokio::task::spawn_local(async move {
                    // Close first, then forget the handles: releasing their tokens on a
                    // live connection would end their races as `tokenDropped`.
                    w.close_link("the client was closed", Closing::Cut).await;
                    w.solves.borrow_mut().clear();
                    let _ = reply.send(());
                });
            }
        }
    }

    /// Runs `work` and sends its answer, unless the caller stopped waiting first.
    fn answer<T: 'static>(
        &self,
        mut reply: oneshot::Sender<Result<T>>,
        work: impl Future<Output = Result<T>> + 'static,
    ) {
        tokio::task::spawn_local(async move {
            tokio::select! {
                answer = work => { let _ = reply.send(answer); }
                _ = reply.closed() => {}
            }
        });
    }

    fn solve(self: &Rc<Self>, id: u64, request: SolveRequest) {
        let kept = Rc::new(RefCell::new(None));
        let live = match &*self.link.borrow() {
            Link::Up(conn) if conn.is_up() => Some(conn.clone()),
            _ => None,
        };
        let (token, driver) = match live {
            // The common case: sent now, in the order the caller issued it.
            Some(conn) => (Token::Ready(conn.send_solve(&request, &kept)), None),
            None if self.closed.get() => (Token::Ready(Err(Error::Closed)), None),
            None => {
                let w = self.clone();
                let k = kept.clone();
                let future: TokenFuture = async move {
                    let conn = w.connection(w.options.reconnect.attempts).await?;
                    conn.send_solve(&request, &k)
                }
                .boxed_local()
                .shared();
                // Dial even if nobody calls the handle; settle the token when done.
                let w = self.clone();
                let settle = future.clone();
                let driver = tokio::task::spawn_local(async move {
                    let token = settle.await;
                    if let Some(entry) = w.solves.borrow_mut().get_mut(&id) {
                        entry.token = Token::Ready(token);
                        entry.driver = None;
                    }
                });
                (Token::Waiting(future), Some(driver))
            }
        };
        self.solves.borrow_mut().insert(
            id,
            Entry {
                token,
                kept,
                calls: Vec::new(),
                driver,
            },
        );
    }

    fn call(&self, id: u64, call: Call, mut reply: oneshot::Sender<Result<Reply>>) {
        let mut solves = self.solves.borrow_mut();
        let entry = solves.get_mut(&id).filter(|_| !self.closed.get());
        let Some(entry) = entry else {
            let _ = reply.send(Err(Error::Closed));
            return;
        };
        let abandonable = !matches!(call, Call::Cancel(_));
        let pending = start_call(&entry.token, call);
        if !abandonable {
            // A cancel runs to its answer: a call dropped at once may never run at all.
            tokio::task::spawn_local(async move {
                let _ = reply.send(pending.await);
            });
            return;
        }
        let slot = Rc::new(RefCell::new(Some(pending)));
        entry.calls.retain(|c| c.borrow().is_some());
        entry.calls.push(slot.clone());
        tokio::task::spawn_local(async move {
            let polled = std::future::poll_fn(|cx| match slot.borrow_mut().as_mut() {
                Some(call) => call.poll_unpin(cx).map(Some),
                None => Poll::Ready(None), // the handle was dropped
            });
            tokio::select! {
                answer = polled => {
                    slot.borrow_mut().take();
                    let _ = reply.send(answer.unwrap_or(Err(Error::Closed)));
                }
                // The caller stopped waiting (its future was dropped): abandon the call.
                _ = reply.closed() => { slot.borrow_mut().take(); }
            }
        });
    }

    fn detach(&self, id: u64) {
        let Some(entry) = self.solves.borrow_mut().remove(&id) else {
            return;
        };
        let pending = start_call(&entry.token, Call::Result);
        let race = tokio::task::spawn_local(async move {
            // A result() call in flight keeps the race alive until it is over.
            let _ = pending.await;
            drop(entry);
        });
        let mut detached = self.detached.borrow_mut();
        detached.retain(|r| !r.is_finished());
        detached.push(race);
    }

    /// The live connection, or a new one (dialled at most `attempts` times, with
    /// back-off), shared by every caller who needs it meanwhile.
    async fn connection(self: &Rc<Self>, attempts: u32) -> Result<Rc<Conn>> {
        if self.closed.get() {
            return Err(Error::Closed);
        }
        let dialing = {
            let mut link = self.link.borrow_mut();
            match &*link {
                Link::Up(conn) if conn.is_up() => return Ok(conn.clone()),
                Link::Dialing(d) => d.clone(),
                _ => {
                    let d = self.clone().dial(attempts).boxed_local().shared();
                    *link = Link::Dialing(d.clone());
                    d
                }
            }
        };
        dialing.await
    }

    async fn dial(self: Rc<Self>, attempts: u32) -> Result<Rc<Conn>> {
        let mut failures = 0;
        let result = loop {
            match self.dial_once().await {
                Ok(conn) => break Ok(conn),
                Err(e) => {
                    failures += 1;
                    let hopeless = !e.is_retryable();
                    if hopeless || failures >= attempts.max(1) || self.closed.get() {
                        break Err(e);
                    }
                    tokio::time::sleep(self.options.reconnect.backoff(failures)).await;
                }
            }
        };
        *self.link.borrow_mut() = match &result {
            Ok(conn) => Link::Up(conn.clone()),
            Err(_) => Link::Down,
        };
        result
    }

    async fn dial_once(self: &Rc<Self>) -> Result<Rc<Conn>> {
        let addr = self.addr.to_string();
        let timeout = self.options.connect_timeout;
        let timed_out = || {
            Error::connect(
                &addr,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ),
            )
        };
        let tls = self.options.tls.as_ref().zip(self.tls.as_ref());
        let (reader, writer, fd) = tokio::time::timeout(timeout, transport::open(&self.addr, tls))
            .await
            .map_err(|_| timed_out())??;
        let network = twoparty::VatNetwork::new(
            BufReader::new(reader),
            BufWriter::new(writer),
            Side::Client,
            Default::default(),
        );
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let gate: gate::Client = rpc.bootstrap(Side::Server);
        let disconnector = rpc.get_disconnector();
        let lost = Rc::new(RefCell::new(None::<String>));
        let driver_lost = lost.clone();
        let driven = tokio::task::spawn_local(async move {
            let why = match rpc.await {
                Ok(()) => "the connection closed".to_owned(),
                Err(e) => e.to_string(),
            };
            driver_lost.borrow_mut().get_or_insert(why);
        });

        let handshake = async {
            let dispatcher = self.login(gate).await?;
            let idle_ms = match dispatcher.ping_request().send().promise.await {
                Ok(r) => r.get()?.get_idle_timeout_ms(),
                // A bare Gate knows only login().
                Err(e)
                    if e.kind == capnp::ErrorKind::Unimplemented
                        || e.extra.contains("not implemented") =>
                {
                    return Err(Error::LoginRequired)
                }
                Err(e) => return Err(e.into()),
            };
            Ok((dispatcher, idle_ms))
        };
        let failure = match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(done)) => Ok(done),
            // The stream broke before the login and the first ping were answered
            // (a TLS peer that refused our certificate, say): no connection formed.
            Ok(Err(Error::Disconnected(why))) => Err(Error::connect(
                &addr,
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why),
            )),
            Ok(Err(Error::Rpc(e))) => Err(Error::connect(
                &addr,
                std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string()),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timed_out()),
        };
        let (dispatcher, idle_ms) = match failure {
            Ok(done) => done,
            Err(e) => {
                let _ = disconnector.await;
                driven.abort();
                return Err(e);
            }
        };
        let (ended_tx, ended) = tokio::sync::watch::channel(false);
        let conn = Rc::new(Conn {
            dispatcher,
            disconnector: RefCell::new(Some(disconnector)),
            fd,
            ended,
            lost: RefCell::new(None),
            keepalive: RefCell::new(None),
        });
        // When the connection ends, mark it lost so the next call dials again.
        let watched = Rc::downgrade(&conn);
        let w = Rc::downgrade(self);
        tokio::task::spawn_local(async move {
            let _ = driven.await;
            let _ = ended_tx.send(true);
            let why = lost.borrow().clone().unwrap_or_default();
            if let Some(conn) = watched.upgrade() {
                conn.lost.borrow_mut().get_or_insert(why);
                if let Some(k) = conn.keepalive.borrow_mut().take() {
                    k.abort();
                }
                if let Some(w) = w.upgrade() {
                    let mut link = w.link.borrow_mut();
                    if matches!(&*link, Link::Up(c) if Rc::ptr_eq(c, &conn)) {
                        *link = Link::Down;
                    }
                }
            }
        });
        if let Some((every, patience)) = keepalive_plan(self.options.keepalive, idle_ms) {
            let k = tokio::task::spawn_local(keep_alive(Rc::downgrade(&conn), every, patience));
            *conn.keepalive.borrow_mut() = Some(k);
        }
        Ok(conn)
    }

    async fn login(&self, gate: gate::Client) -> Result<dispatcher::Client> {
        let Some(credential) = &self.options.credential else {
            // A Dispatcher is a Gate too; without a credential, assume it is one.
            return Ok(FromClientHook::new(gate.client.hook));
        };
        let mut call = gate.login_request();
        call.get().set_credential(credential.as_str());
        let response = call.send().promise.await?;
        let result = response.get()?.get_result()?;
        match result.which() {
            Ok(Login::Dispatcher(d)) => Ok(d?),
            Ok(Login::Refused(e)) => {
                let message = String::from_utf8_lossy(e?.get_message()?.as_bytes()).into_owned();
                Err(Error::LoginRefused(message))
            }
            Ok(Login::WorkerHub(_) | Login::Worker(_)) => Err(Error::LoginRefused(
                "the credential is a worker's: it may not solve".into(),
            )),
            Err(capnp::NotInSchema(n)) => Err(Error::LoginRefused(format!(
                "the server answered login with a case this client does not know (#{n})"
            ))),
        }
    }

    /// Closes the connection and waits until it is closed. `Graceful` writes what is
    /// queued first (such as the release of a token just dropped); `Cut` does not.
    async fn close_link(&self, why: &str, how: Closing) {
        let link = std::mem::replace(&mut *self.link.borrow_mut(), Link::Down);
        let Link::Up(conn) = link else { return };
        match how {
            Closing::Cut => conn.cut(why),
            Closing::Graceful => {
                conn.lost.borrow_mut().get_or_insert_with(|| why.to_owned());
                if let Some(k) = conn.keepalive.borrow_mut().take() {
                    k.abort();
                }
                let disconnector = conn.disconnector.borrow_mut().take();
                if let Some(d) = disconnector {
                    let _ = d.await;
                }
            }
        }
        conn.until_ended().await;
    }
}

#[derive(Clone, Copy)]
enum Closing {
    Graceful,
    Cut,
}

/// A call on a token: sent now when the token is there, else once it is.
fn start_call(token: &Token, call: Call) -> Pending {
    match token {
        Token::Ready(Ok(token)) => send_call(token, call),
        Token::Ready(Err(e)) => futures::future::ready(Err(e.clone())).boxed_local(),
        Token::Waiting(future) => {
            let future = future.clone();
            async move { send_call(&future.await?, call).await }.boxed_local()
        }
    }
}

fn send_call(token: &cancel_token::Client, call: Call) -> Pending {
    match call {
        Call::Result => {
            let promise = token.result_request().send().promise;
            async move {
                let response = promise.await?;
                Ok(Reply::Outcome(Outcome::read(
                    response.get()?.get_outcome()?,
                )?))
            }
            .boxed_local()
        }
        Call::Status => {
            let promise = token.status_request().send().promise;
            async move {
                let response = promise.await?;
                Ok(Reply::Status(SolveStatus::read(
                    response.get()?.get_status()?,
                )?))
            }
            .boxed_local()
        }
        Call::Cancel(reason) => {
            let mut request = token.cancel_request();
            request.get().set_reason(reason.as_str());
            let promise = request.send().promise;
            async move {
                let response = promise.await?;
                Ok(Reply::Status(SolveStatus::read(
                    response.get()?.get_status()?,
                )?))
            }
            .boxed_local()
        }
    }
}

/// How often to ping, and how long to wait for an answer, if at all.
fn keepalive_plan(keepalive: Keepalive, idle_ms: u32) -> Option<(Duration, Duration)> {
    let idle = Duration::from_millis(u64::from(idle_ms));
    match keepalive {
        Keepalive::Off => None,
        Keepalive::FollowServer if idle_ms == 0 => None,
        // Three pings per idle period: one lost or late ping does not cost the connection.
        Keepalive::FollowServer => Some(((idle / 3).max(Duration::from_millis(10)), idle)),
        Keepalive::Every(every) => {
            let every = every.max(Duration::from_millis(10));
            Some((every, (every * 2).max(idle)))
        }
    }
}

async fn keep_alive(conn: std::rc::Weak<Conn>, every: Duration, patience: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(c) = conn.upgrade() else { return };
        if !c.is_up() {
            return;
        }
        let ping = c.dispatcher.ping_request().send().promise;
        drop(c);
        let answered = matches!(tokio::time::timeout(patience, ping).await, Ok(Ok(_)));
        if !answered {
            if let Some(c) = conn.upgrade() {
                c.cut("a keepalive ping went unanswered");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_follows_the_server_unless_told_otherwise() {
        let ms = Duration::from_millis;
        assert_eq!(keepalive_plan(Keepalive::FollowServer, 0), None);
        assert_eq!(
            keepalive_plan(Keepalive::FollowServer, 1500),
            Some((ms(500), ms(1500)))
        );
        assert_eq!(keepalive_plan(Keepalive::Off, 1500), None);
        assert_eq!(
            keepalive_plan(Keepalive::Every(ms(200)), 0),
            Some((ms(200), ms(400)))
        );
    }
}
