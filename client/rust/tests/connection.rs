//! Connection options against servers of our own: login, TLS and mutual TLS, the
//! idle timeout with keepalive, a server restarted or frozen under a client.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{sample, Scratch, Server, EASY, HARD};
use proofrace_client::{Client, Error, Keepalive, Reconnect, SolveRequest, Tls, Verdict};

const SECRET: &str = "correct horse battery staple";

fn hard_request(goal: &str) -> SolveRequest {
    SolveRequest::new(sample(HARD))
        .goal_id(goal)
        .prover("z3")
        .prover("cvc5")
}

async fn proves(client: &Client) {
    let outcome = client
        .solve(SolveRequest::new(sample(EASY)).prover("z3"))
        .result()
        .await
        .expect("result");
    assert_eq!(outcome.verdict, Verdict::Proved);
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all from that CA.
fn pki(dir: &Path) {
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    for (name, san) in [("server", "IP:127.0.0.1"), ("client", "DNS:client")] {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &p(&format!("{name}.key")),
            "-out",
            &p(&format!("{name}.csr")),
        ]);
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName={san}\n"),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &p(&format!("{name}.ext")),
            "-out",
            &p(&format!("{name}.pem")),
        ]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_lets_in_only_the_right_credential() {
    let server = Server::own(&[], &[("PROOFRACE_AUTH_SECRET", SECRET)]);
    match Client::connect(&server.addr).await {
        Err(Error::LoginRequired) => {}
        other => panic!("want LoginRequired, got {other:?}"),
    }
    match Client::builder(&server.addr)
        .credential("wrong")
        .connect()
        .await
    {
        Err(e @ Error::LoginRefused(_)) => {
            assert!(!e.is_retryable());
            assert!(e.to_string().contains("the credential was refused"), "{e}");
        }
        other => panic!("want LoginRefused, got {other:?}"),
    }
    let client = Client::builder(&server.addr)
        .credential(SECRET)
        .connect()
        .await
        .expect("login");
    proves(&client).await;
    server
        .wait_for_event(
            |e| e["event"] == "connection.login",
            Duration::from_secs(10),
        )
        .expect("connection.login");
    assert_eq!(
        server
            .events(|e| e["event"] == "connection.login_refused")
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_with_a_login() {
    let dir = Scratch::new("rust-tls");
    pki(&dir);
    let f = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, ca) = (f("server.pem"), f("server.key"), f("ca.pem"));

    let tls = Server::own(
        &[],
        &[("PROOFRACE_TLS_CERT", &cert), ("PROOFRACE_TLS_KEY", &key)],
    );
    let client = Client::builder(&tls.addr)
        .tls(Tls::with_ca(&ca))
        .connect()
        .await
        .expect("TLS");
    proves(&client).await;
    // Plain Cap'n Proto on a TLS port gets no answer: the connect timeout says so.
    let plain = Client::builder(&tls.addr)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(matches!(plain, Err(Error::Connect { .. })), "{plain:?}");
    // A CA that did not sign the server's certificate.
    let stranger = Client::builder(&tls.addr)
        .tls(Tls::with_ca(f("client.pem")))
        .connect()
        .await;
    assert!(
        matches!(stranger, Err(Error::Connect { .. })),
        "{stranger:?}"
    );
    let missing = Client::builder(&tls.addr)
        .tls(Tls::with_ca(f("no-such-file.pem")))
        .connect()
        .await;
    assert!(matches!(missing, Err(Error::Tls(_))), "{missing:?}");

    let mutual = Server::own(
        &[],
        &[
            ("PROOFRACE_TLS_CERT", &cert),
            ("PROOFRACE_TLS_KEY", &key),
            ("PROOFRACE_TLS_CLIENT_CA", &ca),
            ("PROOFRACE_AUTH_SECRET", SECRET),
        ],
    );
    let client = Client::builder(&mutual.addr)
        .tls(Tls::with_ca(&ca).client_certificate(f("client.pem"), f("client.key")))
        .credential(SECRET)
        .connect()
        .await
        .expect("mutual TLS and login");
    proves(&client).await;
    let anonymous = Client::builder(&mutual.addr)
        .tls(Tls::with_ca(&ca))
        .credential(SECRET)
        .reconnect(Reconnect::never())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    assert!(
        matches!(anonymous, Err(Error::Connect { .. })),
        "{anonymous:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_holds_a_connection_past_the_idle_timeout() {
    let server = Server::own(&[], &[("PROOFRACE_IDLE_TIMEOUT_S", "1")]);
    let client = Client::connect(&server.addr).await.expect("connect");
    assert_eq!(client.ping().await.expect("ping"), Duration::from_secs(1));
    // result() waits three idle timeouts; pings keep the connection.
    let outcome = client
        .solve(hard_request("rust-keepalive").timeout(Duration::from_secs(3)))
        .result()
        .await
        .expect("result after the deadline");
    assert_eq!(outcome.verdict, Verdict::Timeout);
    assert_eq!(outcome.deadline, Duration::from_secs(3));
    assert!(server
        .events(|e| e["event"] == "connection.idle_timeout")
        .is_empty());

    // Without keepalive the server drops the silent connection, and the wait
    // ends as a clear Disconnected error.
    let silent = Client::builder(&server.addr)
        .keepalive(Keepalive::Off)
        .connect()
        .await
        .expect("connect");
    let handle = silent.solve(hard_request("rust-no-keepalive").timeout(Duration::from_secs(20)));
    let solve_id = handle.status().await.expect("status").solve_id;
    match handle.result().await {
        Err(e @ Error::Disconnected(_)) => assert!(e.is_retryable()),
        other => panic!("want Disconnected, got {other:?}"),
    }
    let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
    assert_eq!(finished["cause"], "disconnected", "{finished}");
    assert_eq!(
        server
            .events(|e| e["event"] == "connection.idle_timeout")
            .len(),
        1
    );
    // A new call dials again.
    proves(&silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outlives_a_restart_of_its_server() {
    let mut server = Server::own(&[], &[]);
    let client = Client::connect(&server.addr).await.expect("connect");
    proves(&client).await;
    let handle = client.solve(hard_request("rust-restart"));
    let solve_id = handle.status().await.expect("status").solve_id;
    let waiting = tokio::spawn(async move { handle.result().await });
    tokio::task::block_in_place(|| server.restart());
    // The server stops its races before it closes its connections: the answer is
    // either that cancellation or the lost connection, never a hang.
    match waiting.await.expect("task") {
        Ok(outcome) => assert!(
            matches!(&outcome.verdict, Verdict::Cancelled(r) if r.cause.to_string() == "shutdown"),
            "{outcome:?}"
        ),
        Err(Error::Disconnected(_)) => {}
        Err(other) => panic!("want a shutdown or Disconnected, got {other:?}"),
    }
    let _ = solve_id;
    // New solves reconnect to the new server.
    proves(&client).await;
    server
        .wait_for_event(
            |e| e["event"] == "connection.opened",
            Duration::from_secs(10),
        )
        .expect("connection.opened");
    let opened = server.events(|e| e["event"] == "connection.opened");
    assert_eq!(opened.len(), 1, "{opened:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_noticed_by_keepalive_pings() {
    let server = Server::own(&[], &[]);
    let client = Client::builder(&server.addr)
        .keepalive(Keepalive::Every(Duration::from_millis(100)))
        .reconnect(Reconnect::never())
        .connect()
        .await
        .expect("connect");
    let handle = client.solve(hard_request("rust-frozen"));
    let solve_id = handle.status().await.expect("status").solve_id;
    server.signal("STOP");
    let waited = tokio::time::timeout(Duration::from_secs(30), handle.result()).await;
    server.signal("CONT");
    match waited {
        Ok(Err(Error::Disconnected(_))) => {}
        other => panic!("want Disconnected, got {other:?}"),
    }
    // Once awake, the server sees the closed connection and cancels the race.
    let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
    assert_eq!(finished["cause"], "disconnected", "{finished}");
    assert!(server.prover_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_serves_like_tcp() {
    let dir = Scratch::new("rust-unix");
    let path = dir.join("proofrace.sock").to_string_lossy().into_owned();
    let server = Server::own(&["--unix", &path], &[]);
    let client = Client::connect(&format!("unix:{path}"))
        .await
        .expect("connect over unix");
    assert_eq!(client.address().to_string(), format!("unix:{path}"));
    proves(&client).await;
    // Dropping a handle cancels here too.
    let handle = client.solve(hard_request("rust-unix-drop"));
    let solve_id = handle.status().await.expect("status").solve_id;
    drop(handle);
    client.provers().await.expect("provers");
    let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
    assert_eq!(finished["cause"], "tokenDropped", "{finished}");
    let peers: Vec<_> = server.events(|e| e["event"] == "connection.opened");
    assert!(peers.iter().all(|e| e["peer"] == "unix"), "{peers:?}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_while_the_server_is_gone_fail_as_connect_errors_after_the_back_off() {
    let server = Server::own(&[], &[]);
    let client = Client::builder(&server.addr)
        .reconnect(Reconnect {
            attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        })
        .connect()
        .await
        .expect("connect");
    proves(&client).await;
    tokio::task::block_in_place(|| drop(server));
    // The next solve dials three times, then says why it could not (or, if it went
    // out before the client noticed the server leave, fails as disconnected).
    match client.solve(hard_request("rust-gone")).result().await {
        Err(e @ (Error::Connect { .. } | Error::Disconnected(_))) => {
            assert!(e.is_retryable(), "{e}")
        }
        other => panic!("want a connect error, got {other:?}"),
    }
    match client.provers().await {
        Err(Error::Connect { .. }) => {}
        other => panic!("want a connect error, got {other:?}"),
    }
}
