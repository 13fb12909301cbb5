//! The client against a live server, from multi-threaded tokio runtimes (see `common`
//! for which server).

mod common;

use std::time::{Duration, Instant};

use common::{sample, wait_until, Server, EASY, HARD, REFUTABLE};
use proofrace_client::{
    AttemptOutcome, AttemptState, CancelCause, CancelReason, Client, Error, ErrorKind, Format,
    HostOutcome, SolveHandle, SolveRequest, SolveState, SolveStatus, Source, Verdict,
};

const CANCELLATIONS: &str = "proofrace_solve_cancellations_total";

fn hard_request(goal: &str) -> SolveRequest {
    SolveRequest::new(sample(HARD))
        .goal_id(goal)
        .prover("z3")
        .prover("cvc5")
}

/// Polls `status()` until every attempt's process runs (the schema has no call that
/// waits for this), within a deadline.
async fn all_running(handle: &SolveHandle) -> SolveStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = handle.status().await.expect("status");
        if status.all_attempts_running() {
            return status;
        }
        assert_eq!(status.state, SolveState::Running, "{status:?}");
        assert!(Instant::now() < deadline, "never all running: {status:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (off the runtime's threads) until the server logged the race's end, and
/// checks it was cancelled for `cause`, with every prover reaped.
async fn cancelled_on_the_server(server: &Server, solve_id: &str, cause: &str) {
    if !server.owns_log() {
        return;
    }
    let finished = tokio::task::block_in_place(|| server.solve_finished(solve_id));
    assert_eq!(finished["verdict"], "cancelled", "{finished}");
    assert_eq!(finished["cause"], cause, "{finished}");
    let requested =
        server.events(|e| e["event"] == "solve.cancel_requested" && e["solve_id"] == solve_id);
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["cause"], cause);
    assert!(server.prover_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provers_lists_the_installed_solvers() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let provers = client.provers().await.expect("provers");
    let z3 = provers
        .iter()
        .find(|p| p.name == "z3")
        .expect("z3 is known");
    assert!(z3.available, "{z3:?}");
    assert!(!z3.version.is_empty(), "{z3:?}");
    assert!(z3.formats.contains(&Format::Smtlib2), "{z3:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solve_returns_the_proof_its_winner_and_the_deadline_that_applied() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let request = SolveRequest::new(sample(EASY))
        .goal_id("rust-easy")
        .prover("z3")
        .prover("cvc5")
        .timeout(Duration::from_secs(42));
    let outcome = client.solve(request).result().await.expect("result");

    assert_eq!(outcome.verdict, Verdict::Proved);
    assert_eq!(outcome.goal_id, "rust-easy");
    assert_eq!(outcome.format, Format::Smtlib2);
    assert_eq!(outcome.deadline, Duration::from_secs(42));
    assert_eq!(outcome.source, Source::Race);
    assert!(outcome.conflict.is_none());
    let winner = outcome.winning_attempt().expect("a winner");
    assert_eq!(winner.outcome, AttemptOutcome::Proved);
    assert_eq!(winner.status, "unsat");
    match outcome.host_outcome() {
        HostOutcome::Proved { prover, elapsed_ms } => {
            assert_eq!(prover, winner.prover);
            assert_eq!(u128::from(elapsed_ms), outcome.elapsed.as_millis());
        }
        other => panic!("want proved, got {other:?}"),
    }
    for (attempt, host) in outcome.attempt_host_outcomes() {
        if attempt.prover != winner.prover {
            // A loser either finished too, or was preempted by the winner.
            match host {
                HostOutcome::Proved { .. } => assert!(attempt.stop.is_none()),
                HostOutcome::Cancelled { reason, .. } => {
                    assert_eq!(reason.cause, CancelCause::Preempted)
                }
                other => panic!("unexpected loser outcome {other:?}: {attempt:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_solves_from_spawned_tasks_share_one_client() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let (problem, want) = if i % 2 == 0 {
                    (EASY, Verdict::Proved)
                } else {
                    (REFUTABLE, Verdict::Refuted)
                };
                let request = SolveRequest::new(sample(problem))
                    .goal_id(format!("rust-many-{i}"))
                    .prover("z3");
                let outcome = client.solve(request).result().await.expect("result");
                assert_eq!(outcome.verdict, want, "{outcome:?}");
                assert_eq!(outcome.goal_id, format!("rust-many-{i}"));
                outcome.solve_id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 24, "every solve is its own race");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refutation_is_no_proof_for_the_host() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let outcome = client
        .solve(SolveRequest::new(sample(REFUTABLE)).prover("z3"))
        .result()
        .await
        .expect("result");
    assert_eq!(outcome.verdict, Verdict::Refuted);
    assert!(matches!(
        outcome.host_outcome(),
        HostOutcome::NoProofFound { ref reason, .. } if reason == "refuted by z3 (sat)"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_an_error_the_host_can_act_on() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let request = SolveRequest::new(sample(EASY)).prover("no-such-prover");
    match client.solve(request).result().await {
        Err(Error::InvalidRequest(e)) => assert_eq!(e.kind, ErrorKind::UnknownProver, "{e:?}"),
        other => panic!("want an unknownProver refusal, got {other:?}"),
    }
    let unencodable = client.solve(SolveRequest::new(sample(EASY)).format(Format::Other(99)));
    match unencodable.result().await {
        Err(Error::Rpc(e)) => assert!(e.to_string().contains("unknown format"), "{e}"),
        other => panic!("want an encoding error, got {other:?}"),
    }
    // The connection itself is unharmed.
    assert!(!client.provers().await.expect("provers").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_takes_effect_once_called_even_if_never_awaited() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-unawaited-cancel"));
    // Issued and dropped at once: nothing is ever polled, yet the cancel goes out,
    // pipelined on the promised token right behind solve().
    drop(handle.cancel("never awaited"));
    let outcome = handle.result().await.expect("result");
    let reason = CancelReason {
        cause: CancelCause::Client,
        message: "never awaited".into(),
    };
    assert_eq!(outcome.verdict, Verdict::Cancelled(reason.clone()));
    assert_eq!(outcome.winner, None);
    assert!(outcome.host_outcome().is_cancelled());
    for (attempt, host) in outcome.attempt_host_outcomes() {
        assert_eq!(attempt.outcome, AttemptOutcome::Cancelled, "{attempt:?}");
        assert!(matches!(host, HostOutcome::Cancelled { reason: ref r, .. } if *r == reason));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_inside_select_is_not_lost_when_its_branch_loses() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-select-cancel"));
    let running = all_running(&handle).await;
    // The cancel future is polled once at most: the timer branch is already due.
    tokio::select! {
        biased;
        _ = tokio::time::sleep(Duration::ZERO) => {}
        _ = handle.cancel("cancelled inside select!") => {}
    }
    let outcome = handle.result().await.expect("result");
    assert!(
        matches!(&outcome.verdict, Verdict::Cancelled(r) if r.message == "cancelled inside select!"),
        "{:?}",
        outcome.verdict
    );
    for attempt in &outcome.attempts {
        let stop = attempt.stop.as_ref().expect("stopped");
        assert_eq!(stop.reason.cause, CancelCause::Client);
    }
    cancelled_on_the_server(&server, &running.solve_id, "client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_is_cancel_safe() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-cancel-safe"));
    all_running(&handle).await;
    // Abandoned twice while the race runs: the race goes on, nothing is lost.
    for _ in 0..2 {
        let abandoned = tokio::time::timeout(Duration::from_millis(100), handle.result()).await;
        assert!(abandoned.is_err(), "{abandoned:?}");
    }
    assert_eq!(
        handle.status().await.expect("status").state,
        SolveState::Running
    );
    drop(handle.cancel("enough waiting"));
    let outcome = handle.result().await.expect("result after abandoned waits");
    assert!(
        matches!(&outcome.verdict, Verdict::Cancelled(r) if r.message == "enough waiting"),
        "{:?}",
        outcome.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_cause_to_end_a_race_is_the_one_reported() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-twice"));
    all_running(&handle).await;
    handle.cancel("first").await.expect("first cancel");
    let second = handle.cancel("second").await.expect("second cancel");
    assert_eq!(
        second.cancel_reason.map(|r| r.message),
        Some("first".to_owned())
    );
    let outcome = handle.result().await.expect("result");
    assert!(matches!(&outcome.verdict, Verdict::Cancelled(r) if r.message == "first"));
    let after = handle.status().await.expect("status");
    assert_eq!(after.state, SolveState::Finished);
    assert!(after
        .attempts
        .iter()
        .all(|a| a.state == AttemptState::Finished));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_while_result_waits_cancels_the_race() {
    let server = Server::own(&[], &[]); // its counters move for this test only
    let before = server.counter(CANCELLATIONS, "cause", "tokenDropped");
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-drop-while-waiting"));
    let solve_id = all_running(&handle).await.solve_id;
    {
        // result() is in flight on the server (a waiter that would keep the token
        // alive) when the handle goes.
        let waiting = tokio::time::timeout(Duration::from_millis(200), handle.result()).await;
        assert!(
            waiting.is_err(),
            "the race cannot have finished: {waiting:?}"
        );
        drop(handle);
    }
    // Answered only after the server has read the release queued before it.
    client
        .provers()
        .await
        .expect("the connection outlives the handle");
    let after = server.counter(CANCELLATIONS, "cause", "tokenDropped");
    assert_eq!(
        after,
        before + 1.0,
        "tokenDropped cancellations {before} -> {after}"
    );
    cancelled_on_the_server(&server, &solve_id, "tokenDropped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_task_that_awaits_result_cancels_the_race() {
    let server = Server::own(&[], &[]); // its counters move for this test only
    let before = server.counter(CANCELLATIONS, "cause", "tokenDropped");
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-abort"));
    let solve_id = all_running(&handle).await.solve_id;
    let (started, waiting) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let result = handle.result();
        let _ = started.send(());
        result.await
    });
    waiting.await.expect("the task started awaiting");
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    client.provers().await.expect("provers");
    assert_eq!(
        server.counter(CANCELLATIONS, "cause", "tokenDropped"),
        before + 1.0
    );
    cancelled_on_the_server(&server, &solve_id, "tokenDropped").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_dropped_at_once_leaves_no_race_running() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    drop(client.solve(hard_request("rust-dropped-at-once")));
    client.provers().await.expect("the connection is unharmed");
    if server.owns_log() {
        // Either the call was cancelled before the race started, or the race was
        // cancelled as soon as its token was released: never left running.
        let started = server
            .events(|e| e["event"] == "solve.started" && e["goal_id"] == "rust-dropped-at-once");
        for s in started {
            let id = s["solve_id"].as_str().unwrap().to_owned();
            let finished = tokio::task::block_in_place(|| server.solve_finished(&id));
            assert_eq!(finished["verdict"], "cancelled", "{finished}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_race_runs_to_its_end() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(
        SolveRequest::new(sample("pigeonhole-6.smt2"))
            .goal_id("rust-detached")
            .prover("z3"),
    );
    let solve_id = handle.status().await.expect("status").solve_id;
    handle.detach();
    // The client goes too: the RPC thread keeps the race until it is over.
    drop(client);
    if server.owns_log() {
        let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
        assert_eq!(finished["verdict"], "proved", "{finished}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_keeps_the_connection_after_the_client_is_dropped() {
    let server = Server::start();
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(SolveRequest::new(sample(EASY)).prover("z3"));
    drop(client);
    let outcome = handle
        .result()
        .await
        .expect("result over the handle's connection");
    assert_eq!(outcome.verdict, Verdict::Proved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_and_its_handles_closes_the_connection() {
    // Our own server: its connection gauge counts this test's connections only.
    let server = Server::own(&[], &[]);
    let client = Client::connect(&server.addr).await.expect("connect");
    assert_eq!(server.gauge("proofrace_connections"), 1.0);
    let handle = client.solve(hard_request("rust-drop-all"));
    let solve_id = all_running(&handle).await.solve_id;
    // No round trip after this: the release and the connection's end reach the
    // server together, so either cause may be the one recorded.
    drop(client);
    drop(handle);
    wait_until("the connection to close", Duration::from_secs(15), || {
        server.gauge("proofrace_connections") == 0.0
    });
    // The server writes its log in batches: wait for the line, then count.
    server
        .wait_for_event(
            |e| e["event"] == "connection.closed",
            Duration::from_secs(10),
        )
        .expect("connection.closed");
    let closed = server.events(|e| e["event"] == "connection.closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
    assert_eq!(finished["verdict"], "cancelled");
    let cause = finished["cause"].as_str().unwrap_or_default();
    assert!(
        ["tokenDropped", "disconnected"].contains(&cause),
        "{finished}"
    );
    assert!(server.prover_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_connection_and_its_races_at_once() {
    let server = Server::own(&[], &[]);
    let client = Client::connect(&server.addr).await.expect("connect");
    let handle = client.solve(hard_request("rust-close"));
    let solve_id = all_running(&handle).await.solve_id;
    client.close().await;
    assert!(matches!(handle.result().await, Err(Error::Closed)));
    assert!(matches!(client.provers().await, Err(Error::Closed)));
    let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
    assert_eq!(
        (finished["verdict"].as_str(), finished["cause"].as_str()),
        (Some("cancelled"), Some("disconnected"))
    );
    server
        .wait_for_event(
            |e| e["event"] == "connection.closed",
            Duration::from_secs(10),
        )
        .expect("connection.closed");
    assert_eq!(server.gauge("proofrace_connections"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_server_says_so_and_it_is_retryable() {
    let server = Server::own(&[], &[("PROOFRACE_MAX_SOLVES_PER_CONNECTION", "1")]);
    let client = Client::connect(&server.addr).await.expect("connect");
    let first = client.solve(hard_request("rust-first"));
    all_running(&first).await;
    let second = client.solve(SolveRequest::new(sample(EASY)).prover("z3"));
    match second.result().await {
        Err(e @ Error::Overloaded(_)) => assert!(e.is_retryable()),
        other => panic!("want overloaded, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_are_refused_before_connecting() {
    match Client::connect("no-port-here").await {
        Err(Error::Address(a)) => assert_eq!(a, "no-port-here"),
        other => panic!("want an address error, got {other:?}"),
    }
    // Nothing listens on port 1 of loopback.
    match Client::connect("127.0.0.1:1").await {
        Err(e @ Error::Connect { .. }) => assert!(e.is_retryable()),
        other => panic!("want a connect error, got {other:?}"),
    }
}
