//! `drop-latency`: how fast a dropped handle stops a race, seen from a
//! multi-threaded tokio runtime and measured against the server's own log.
//!
//! ```text
//! cargo run --example drop-latency [RUNS]     # default 40 runs
//! ```
//!
//! It starts its own server (as the live tests do: `PROOFRACE_BIN`, `proofrace`
//! on PATH, or the repository's `.venv`), then, RUNS times: races z3 and cvc5 on
//! a problem they need minutes for, waits until both provers run, drops the
//! handle from a spawned task, and reads two instants from the server's log:
//! `solve.cancel_requested` (the drop reached the race) and `solve.finished`
//! (every prover killed and reaped). Both are wall-clock stamps in whole
//! microseconds, compared with the wall clock read just before the drop.
//! Prints p50, p99 and max of each.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{sample, Server, HARD};
use proofrace_client::{Client, SolveRequest};

fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i128
}

/// `2026-11-30T02:40:01.123456Z` as unix nanoseconds.
fn stamp_ns(stamp: &str) -> i128 {
    let n = |s: &str| {
        s.parse::<i64>()
            .unwrap_or_else(|_| panic!("bad stamp {stamp}"))
    };
    let (date, time) = stamp
        .trim_end_matches('Z')
        .split_once('T')
        .expect("ISO stamp");
    let mut d = date.split('-').map(n);
    let (y, m, day) = (d.next().unwrap(), d.next().unwrap(), d.next().unwrap());
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(n);
    let secs =
        days * 86_400 + t.next().unwrap() * 3600 + t.next().unwrap() * 60 + t.next().unwrap();
    let frac_ns = n(&format!("{frac:0<9}")[..9]);
    i128::from(secs) * 1_000_000_000 + i128::from(frac_ns)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(40, |s| s.parse().expect("RUNS"));
    let server = Server::own(&[], &[]);
    let client = Client::connect(&server.addr).await.expect("connect");
    let (mut to_cancel, mut to_reaped) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let handle = client.solve(
            SolveRequest::new(sample(HARD))
                .goal_id(format!("drop-latency-{i}"))
                .prover("z3")
                .prover("cvc5"),
        );
        let solve_id = loop {
            let status = handle.status().await.expect("status");
            if status.all_attempts_running() {
                break status.solve_id;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Dropped on another task of the multi-threaded runtime.
        let dropped_at = tokio::spawn(async move {
            let at = unix_ns();
            drop(handle);
            at
        })
        .await
        .expect("drop task");
        let finished = tokio::task::block_in_place(|| server.solve_finished(&solve_id));
        assert_eq!(finished["cause"], "tokenDropped", "{finished}");
        let requested = server.events(|e| {
            e["event"] == "solve.cancel_requested" && e["solve_id"] == solve_id.as_str()
        });
        let ms = |stamp: &serde_json::Value| {
            (stamp_ns(stamp.as_str().expect("timestamp")) - dropped_at) as f64 / 1e6
        };
        to_cancel.push(ms(&requested[0]["timestamp"]));
        to_reaped.push(ms(&finished["timestamp"]));
        assert!(
            server.prover_pids().is_empty(),
            "run {i}: provers left running"
        );
    }
    for (what, samples) in [
        (
            "drop -> cancel recorded (solve.cancel_requested)",
            &mut to_cancel,
        ),
        ("drop -> all reaped (solve.finished)", &mut to_reaped),
    ] {
        samples.sort_by(f64::total_cmp);
        println!(
            "{what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={})",
            percentile(samples, 50.0),
            percentile(samples, 99.0),
            samples[samples.len() - 1],
            samples.len()
        );
    }
}
