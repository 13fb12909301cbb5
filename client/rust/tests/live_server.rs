//! The client against a live server (see `common` for which server).

mod common;

use std::time::{Duration, Instant};

use common::{run_local, sample, wait_until, Server, EASY, HARD, REFUTABLE};
use proofrace_client::{
    AttemptOutcome, AttemptState, CancelCause, CancelReason, Client, Error, ErrorKind, Format,
    HostOutcome, SolveHandle, SolveRequest, SolveState, SolveStatus, Verdict,
};

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

#[test]
fn provers_lists_the_installed_solvers() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let provers = client.provers().await.expect("provers");
        let z3 = provers
            .iter()
            .find(|p| p.name == "z3")
            .expect("z3 is known");
        assert!(z3.available, "{z3:?}");
        assert!(!z3.version.is_empty(), "{z3:?}");
        assert!(z3.formats.contains(&Format::Smtlib2), "{z3:?}");
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn solve_returns_the_proof_and_its_winner() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let request = SolveRequest::new(sample(EASY))
            .goal_id("rust-easy")
            .prover("z3")
            .prover("cvc5");
        let outcome = client.solve(request).result().await.expect("result");

        assert_eq!(outcome.verdict, Verdict::Proved);
        assert_eq!(outcome.goal_id, "rust-easy");
        assert_eq!(outcome.format, Format::Smtlib2);
        assert!(!outcome.solve_id.is_empty());
        assert!(!outcome.disagreement);
        assert_eq!(outcome.host_outcome(), HostOutcome::Proved);
        let winner = outcome.winning_attempt().expect("a winner");
        assert_eq!(winner.outcome, AttemptOutcome::Proved);
        assert_eq!(winner.status, "unsat");
        assert_eq!(outcome.attempts.len(), 2);
        for loser in outcome
            .attempts
            .iter()
            .filter(|a| a.prover != winner.prover)
        {
            // A loser either finished too, or was preempted by the winner.
            match loser.outcome {
                AttemptOutcome::Proved => assert!(loser.stop.is_none()),
                AttemptOutcome::Cancelled => {
                    let stop = loser.stop.as_ref().expect("a preempted attempt has a stop");
                    assert_eq!(stop.reason.cause, CancelCause::Preempted);
                }
                other => panic!("unexpected loser outcome {other:?}: {loser:?}"),
            }
        }
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn a_refutation_is_no_proof_for_the_host() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let request = SolveRequest::new(sample(REFUTABLE)).prover("z3");
        let outcome = client.solve(request).result().await.expect("result");

        assert_eq!(outcome.verdict, Verdict::Refuted);
        assert_eq!(outcome.winner.as_deref(), Some("z3"));
        assert_eq!(outcome.host_outcome(), HostOutcome::NoProofFound);
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn a_refused_request_is_an_error_verdict_not_an_rpc_failure() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let request = SolveRequest::new(sample(EASY)).prover("no-such-prover");
        let outcome = client.solve(request).result().await.expect("result");

        match &outcome.verdict {
            Verdict::Error(e) => assert_eq!(e.kind, ErrorKind::UnknownProver, "{e:?}"),
            other => panic!("want an unknownProver error, got {other:?}"),
        }
        assert_eq!(outcome.host_outcome(), HostOutcome::SystemError);
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn a_pipelined_cancel_stops_the_race_with_the_callers_reason() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(hard_request("rust-pipelined"));
        // Nothing awaited since solve(): the cancel is pipelined on the promised token.
        let status = handle.cancel("pipelined from rust").await.expect("cancel");
        let reason = CancelReason {
            cause: CancelCause::Client,
            message: "pipelined from rust".into(),
        };
        assert_eq!(status.cancel_reason.as_ref(), Some(&reason));
        assert_ne!(status.state, SolveState::Running);

        let outcome = handle.result().await.expect("result");
        assert_eq!(outcome.solve_id, status.solve_id);
        assert_eq!(outcome.verdict, Verdict::Cancelled(reason.clone()));
        assert_eq!(outcome.winner, None);
        assert_eq!(
            outcome.host_outcome(),
            HostOutcome::Cancelled {
                reason: reason.clone()
            }
        );
        for attempt in &outcome.attempts {
            assert_eq!(attempt.outcome, AttemptOutcome::Cancelled, "{attempt:?}");
            assert_eq!(
                attempt.host_outcome(),
                HostOutcome::Cancelled {
                    reason: reason.clone()
                }
            );
        }
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn the_first_cause_to_end_a_race_is_the_one_reported() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(hard_request("rust-twice"));
        let running = all_running(&handle).await;
        assert_eq!(running.attempts.len(), 2);
        assert!(running
            .attempts
            .iter()
            .all(|a| a.state == AttemptState::Running));

        handle.cancel("first").await.expect("first cancel");
        let second = handle.cancel("second").await.expect("second cancel");
        assert_eq!(
            second.cancel_reason.map(|r| r.message),
            Some("first".to_owned())
        );
        let outcome = handle.result().await.expect("result");
        assert!(
            matches!(&outcome.verdict, Verdict::Cancelled(r) if r.message == "first"),
            "{:?}",
            outcome.verdict
        );
        // Every attempt was running, so each one was stopped, and reaped before result().
        for attempt in &outcome.attempts {
            let stop = attempt.stop.as_ref().expect("stopped");
            assert_eq!(stop.reason.cause, CancelCause::Client);
            assert!(stop.latency > Duration::ZERO);
        }
        let after = handle.status().await.expect("status");
        assert_eq!(after.state, SolveState::Finished);
        assert!(after
            .attempts
            .iter()
            .all(|a| a.state == AttemptState::Finished));
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn dropping_the_handle_cancels_the_race_on_the_server() {
    let server = Server::start();
    let before = server.counter(
        "proofrace_solve_cancellations_total",
        "cause",
        "tokenDropped",
    );
    let solve_id = std::cell::RefCell::new(String::new());
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(hard_request("rust-drop"));
        *solve_id.borrow_mut() = all_running(&handle).await.solve_id;

        drop(handle);
        // Answered only after the server has read the Release queued before it.
        client
            .provers()
            .await
            .expect("the connection outlives the handle");
        client.disconnect().await.expect("disconnect");
    });
    let after = server.counter(
        "proofrace_solve_cancellations_total",
        "cause",
        "tokenDropped",
    );
    assert!(
        after > before,
        "tokenDropped cancellations {before} -> {after}"
    );
    if server.owns_log() {
        let id = solve_id.into_inner();
        let finished = server
            .wait_for_event(
                |e| e["event"] == "solve.finished" && e["solve_id"] == id.as_str(),
                Duration::from_secs(15),
            )
            .expect("solve.finished for the dropped race");
        assert_eq!(finished["verdict"], "cancelled");
        assert_eq!(finished["cause"], "tokenDropped");
        let requested = server
            .events(|e| e["event"] == "solve.cancel_requested" && e["solve_id"] == id.as_str());
        assert_eq!(requested.len(), 1, "{requested:?}");
        assert_eq!(requested[0]["cause"], "tokenDropped");
    }
}

#[test]
fn a_handle_dropped_at_once_leaves_no_race_running() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        drop(client.solve(hard_request("rust-dropped-at-once")));
        // Answered after the server has read the solve call and its Finish.
        client.provers().await.expect("the connection is unharmed");
        client.disconnect().await.expect("disconnect");
    });
    if server.owns_log() {
        // Either the call was cancelled before the race started, or the race was
        // cancelled as soon as its token was released: never left running.
        let started = server
            .events(|e| e["event"] == "solve.started" && e["goal_id"] == "rust-dropped-at-once");
        for s in started {
            let finished = server
                .wait_for_event(
                    |e| e["event"] == "solve.finished" && e["solve_id"] == s["solve_id"],
                    Duration::from_secs(15),
                )
                .expect("the started race finishes");
            assert_eq!(finished["verdict"], "cancelled", "{finished}");
        }
    }
}

#[test]
fn dropping_the_client_and_the_handle_together_stops_the_race() {
    let server = Server::start();
    let cancelled = |s: &Server| {
        ["tokenDropped", "disconnected"]
            .map(|c| s.counter("proofrace_solve_cancellations_total", "cause", c))
            .iter()
            .sum::<f64>()
    };
    let before = cancelled(&server);
    let solve_id = std::cell::RefCell::new(String::new());
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(hard_request("rust-drop-all"));
        *solve_id.borrow_mut() = all_running(&handle).await.solve_id;
        // No round trip after this: the release and the connection's end reach the
        // server together, so either cause may be the one recorded.
        drop(client);
        drop(handle);
    });
    wait_until("the race to be cancelled", Duration::from_secs(15), || {
        cancelled(&server) > before
    });
    if server.owns_log() {
        let id = solve_id.into_inner();
        let finished = server
            .wait_for_event(
                |e| e["event"] == "solve.finished" && e["solve_id"] == id.as_str(),
                Duration::from_secs(15),
            )
            .expect("solve.finished for the abandoned race");
        assert_eq!(finished["verdict"], "cancelled");
        let cause = finished["cause"].as_str().unwrap_or_default();
        assert!(
            ["tokenDropped", "disconnected"].contains(&cause),
            "{finished}"
        );
    }
}

#[test]
fn a_handle_keeps_the_connection_after_the_client_is_dropped() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(SolveRequest::new(sample(EASY)).prover("z3"));
        drop(client);
        let outcome = handle
            .result()
            .await
            .expect("result over the handle's connection");
        assert_eq!(outcome.verdict, Verdict::Proved);
    });
}

#[test]
fn a_request_that_cannot_be_encoded_fails_on_first_use() {
    let server = Server::start();
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(SolveRequest::new(sample(EASY)).format(Format::Other(99)));
        match handle.result().await {
            Err(Error::Rpc(e)) => assert!(e.to_string().contains("unknown format"), "{e}"),
            other => panic!("want an encoding error, got {other:?}"),
        }
        // The connection itself is unharmed.
        assert!(!client.provers().await.expect("provers").is_empty());
        client.disconnect().await.expect("disconnect");
    });
}

#[test]
fn bad_addresses_are_refused_before_connecting() {
    run_local(async {
        match Client::connect("no-port-here").await {
            Err(Error::Address(a)) => assert_eq!(a, "no-port-here"),
            other => panic!("want an address error, got {other:?}"),
        }
    });
}
