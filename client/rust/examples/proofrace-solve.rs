//! `proofrace-solve`: send one problem to a proofrace server and print the outcome.
//!
//! ```text
//! proofrace-solve FILE [--addr A] [--prover P]... [--strategy S] [--format F]
//!                 [--timeout-ms N] [--goal-id ID] [--json]
//!                 [--cancel-pipelined REASON | --cancel-after-running REASON
//!                  | --drop-after-running] [--running-timeout-ms N]
//!                 [--credential-file F] [--tls-ca F [--tls-cert F --tls-key F]]
//! ```
//!
//! Modes beyond a plain solve, for demonstrations and the interop tests:
//! * `--cancel-pipelined REASON` calls `cancel` on the pipelined token right
//!   after `solve`, before the server has answered it, then prints the result.
//! * `--cancel-after-running REASON` waits until every attempt runs, cancels,
//!   then prints the result.
//! * `--drop-after-running` waits until every attempt runs, drops the handle
//!   (the server cancels with `tokenDropped`), makes one more round trip so the
//!   server has read the release, and prints the instant of the drop.
//! * `--drop-all-after-running` waits until every attempt runs, drops the handle
//!   and the client (the connection closes), prints the instant, then stays
//!   alive until stdin ends: what the server sees is the drop, not an exit.
//!
//! With `--json`, every line printed is one JSON object with an `event` field;
//! instants are wall-clock unix nanoseconds (`*_unix_ns`), comparable with the
//! server's log timestamps on the same machine.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use proofrace_client::{
    Attempt, CancelReason, Client, Exit, Format, HostOutcome, Outcome, SolveHandle, SolveRequest,
    SolveStatus, Strategy, Tls, Verdict,
};

const USAGE: &str = "usage: proofrace-solve FILE [--addr A] [--prover P]... [--strategy S] \
[--format F] [--timeout-ms N] [--goal-id ID] [--json] \
[--cancel-pipelined REASON | --cancel-after-running REASON | --drop-after-running \
| --drop-all-after-running] \
[--running-timeout-ms N] [--credential-file F] [--tls-ca F [--tls-cert F --tls-key F]]";

#[derive(Debug)]
enum Mode {
    Solve,
    CancelPipelined(String),
    CancelAfterRunning(String),
    DropAfterRunning,
    DropAllAfterRunning,
}

#[derive(Debug)]
struct Args {
    addr: String,
    request: SolveRequest,
    json: bool,
    mode: Mode,
    running_timeout: Duration,
    credential: Option<String>,
    tls: Option<Tls>,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut file = None;
    let mut addr = std::env::var("PROOFRACE_ADDR").unwrap_or_else(|_| "127.0.0.1:7340".into());
    let mut provers = Vec::new();
    let mut strategy = Strategy::FirstWins;
    let mut format = Format::Auto;
    let mut timeout_ms = 0u32;
    let mut goal_id = None;
    let mut json = false;
    let mut mode = Mode::Solve;
    let mut running_timeout = Duration::from_secs(30);
    let mut credential = None;
    let (mut ca, mut cert, mut key) = (None, None, None);

    fn value(argv: &mut dyn Iterator<Item = String>, flag: &str) -> Result<String, String> {
        argv.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn number<T: std::str::FromStr>(s: String, flag: &str) -> Result<T, String> {
        s.parse()
            .map_err(|_| format!("{flag}: not a number: {s:?}"))
    }

    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--addr" => addr = value(&mut argv, &arg)?,
            "--prover" => provers.push(value(&mut argv, &arg)?),
            "--strategy" => strategy = value(&mut argv, &arg)?.parse()?,
            "--format" => format = value(&mut argv, &arg)?.parse()?,
            "--timeout-ms" => timeout_ms = number(value(&mut argv, &arg)?, &arg)?,
            "--goal-id" => goal_id = Some(value(&mut argv, &arg)?),
            "--json" => json = true,
            "--cancel-pipelined" => mode = Mode::CancelPipelined(value(&mut argv, &arg)?),
            "--cancel-after-running" => mode = Mode::CancelAfterRunning(value(&mut argv, &arg)?),
            "--drop-after-running" => mode = Mode::DropAfterRunning,
            "--drop-all-after-running" => mode = Mode::DropAllAfterRunning,
            "--running-timeout-ms" => {
                running_timeout = Duration::from_millis(number(value(&mut argv, &arg)?, &arg)?)
            }
            "--credential-file" => {
                let path = value(&mut argv, &arg)?;
                let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
                credential = Some(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            "--tls-ca" => ca = Some(value(&mut argv, &arg)?),
            "--tls-cert" => cert = Some(value(&mut argv, &arg)?),
            "--tls-key" => key = Some(value(&mut argv, &arg)?),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ if file.is_none() => file = Some(arg),
            _ => return Err(format!("one FILE only\n{USAGE}")),
        }
    }
    let file = file.ok_or_else(|| USAGE.to_string())?;
    let content = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
    let mut request = SolveRequest::new(content)
        .goal_id(goal_id.unwrap_or(file))
        .strategy(strategy)
        .format(format);
    request.provers = provers;
    request.timeout_ms = timeout_ms;
    let tls = match (ca, cert, key) {
        (None, None, None) => None,
        (Some(ca), None, None) => Some(Tls::with_ca(ca)),
        (Some(ca), Some(cert), Some(key)) => Some(Tls::with_ca(ca).client_certificate(cert, key)),
        _ => {
            return Err(format!(
                "--tls-cert and --tls-key go together, with --tls-ca\n{USAGE}"
            ))
        }
    };
    Ok(Args {
        addr,
        request,
        json,
        mode,
        running_timeout,
        credential,
        tls,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proofrace-solve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Client::builder(&args.addr);
    if let Some(credential) = args.credential {
        builder = builder.credential(credential);
    }
    if let Some(tls) = args.tls {
        builder = builder.tls(tls);
    }
    let client = builder.connect().await?;
    let out = Printer { json: args.json };
    match args.mode {
        Mode::Solve => {
            let handle = client.solve(args.request);
            out.outcome(&handle.result().await?);
        }
        Mode::CancelPipelined(reason) => {
            let handle = client.solve(args.request);
            // No await between solve and cancel: the cancel rides the pipeline.
            let sent = unix_ns();
            let status = handle.cancel(reason.as_str()).await?;
            out.cancelled(sent, &status);
            out.outcome(&handle.result().await?);
            out.reaped(sent);
        }
        Mode::CancelAfterRunning(reason) => {
            let handle = client.solve(args.request);
            let running = wait_all_running(&handle, args.running_timeout).await?;
            out.status("running", &running);
            let sent = unix_ns();
            let status = handle.cancel(reason.as_str()).await?;
            out.cancelled(sent, &status);
            out.outcome(&handle.result().await?);
            out.reaped(sent);
        }
        Mode::DropAfterRunning => {
            let handle = client.solve(args.request);
            let running = wait_all_running(&handle, args.running_timeout).await?;
            out.status("running", &running);
            let dropped = unix_ns();
            drop(handle);
            // The Release was queued ahead of this call on the same connection, so
            // its answer proves the server has read the Release.
            client.provers().await?;
            let acked = unix_ns();
            out.dropped(&running.solve_id, dropped, acked);
        }
        Mode::DropAllAfterRunning => {
            let handle = client.solve(args.request);
            let running = wait_all_running(&handle, args.running_timeout).await?;
            out.status("running", &running);
            let dropped = unix_ns();
            drop(handle);
            drop(client);
            out.dropped(&running.solve_id, dropped, dropped);
            tokio::task::spawn_blocking(|| {
                std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            })
            .await??;
            return Ok(());
        }
    }
    client.close().await;
    Ok(())
}

/// Polls `status()` until every attempt's process runs. The schema offers no
/// call that waits for that, so this polls, bounded by `limit`.
async fn wait_all_running(
    handle: &SolveHandle,
    limit: Duration,
) -> Result<SolveStatus, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + limit;
    loop {
        let status = handle.status().await?;
        if status.all_attempts_running() {
            return Ok(status);
        }
        if status.state != proofrace_client::SolveState::Running {
            return Err(format!("the race left the running state first: {status:?}").into());
        }
        if Instant::now() >= deadline {
            return Err(format!("attempts not all running after {limit:?}: {status:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}

// ---- output --------------------------------------------------------------------

struct Printer {
    json: bool,
}

impl Printer {
    fn outcome(&self, o: &Outcome) {
        if !self.json {
            println!("verdict: {}", describe_verdict(&o.verdict));
            println!("host outcome: {}", o.host_outcome());
            println!("winner: {}", o.winner.as_deref().unwrap_or("-"));
            println!(
                "solve {} ({}), {} attempts, {:.1} ms{}",
                o.solve_id,
                o.format,
                o.attempts.len(),
                o.elapsed.as_secs_f64() * 1e3,
                if o.disagreement {
                    ", PROVERS DISAGREE"
                } else {
                    ""
                }
            );
            for a in &o.attempts {
                let stop = a.stop.as_ref().map_or(String::new(), |s| {
                    format!(
                        " stopped: {} in {} us{}",
                        describe_reason(&s.reason),
                        s.latency.as_micros(),
                        if s.escalated { " (SIGKILL)" } else { "" }
                    )
                });
                println!(
                    "  {:<8} {:<20} answer={:<7} {:>9.1} ms{stop}",
                    a.prover,
                    a.outcome.to_string(),
                    a.answer.to_string(),
                    a.elapsed.as_secs_f64() * 1e3,
                );
            }
            return;
        }
        let (cancel_reason, error) = match &o.verdict {
            Verdict::Cancelled(r) => (reason_json(r), Value::Null),
            Verdict::Error(e) => (
                Value::Null,
                json!({"kind": e.kind.to_string(), "message": e.message}),
            ),
            _ => (Value::Null, Value::Null),
        };
        println!(
            "{}",
            json!({
                "event": "outcome",
                "solve_id": o.solve_id,
                "goal_id": o.goal_id,
                "verdict": o.verdict.to_string(),
                "cancel_reason": cancel_reason,
                "error": error,
                "winner": o.winner,
                "host_outcome": o.host_outcome().to_string(),
                "host_case": o.host_outcome().case(),
                "deadline_ms": o.deadline.as_millis() as u64,
                "strategy": o.strategy.to_string(),
                "format": o.format.to_string(),
                "disagreement": o.disagreement,
                "elapsed_us": o.elapsed.as_micros() as u64,
                "attempts": o.attempts.iter().map(|a| attempt_json(a, o)).collect::<Vec<_>>(),
            })
        );
    }

    fn status(&self, event: &str, s: &SolveStatus) {
        if !self.json {
            println!(
                "{event}: solve {} {} with {} attempts",
                s.solve_id,
                s.state,
                s.attempts.len()
            );
            return;
        }
        println!(
            "{}",
            json!({
                "event": event,
                "solve_id": s.solve_id,
                "state": s.state.to_string(),
                "attempts": s.attempts.len(),
                "at_unix_ns": unix_ns(),
            })
        );
    }

    fn cancelled(&self, sent: u128, s: &SolveStatus) {
        let answered = unix_ns();
        if !self.json {
            println!(
                "cancel answered in {:.3} ms: solve {} {}",
                (answered - sent) as f64 / 1e6,
                s.solve_id,
                s.state
            );
            return;
        }
        println!(
            "{}",
            json!({
                "event": "cancelled",
                "solve_id": s.solve_id,
                "state": s.state.to_string(),
                "cancel_reason": s.cancel_reason.as_ref().map_or(Value::Null, reason_json),
                "cancel_sent_unix_ns": sent,
                "cancel_answered_unix_ns": answered,
            })
        );
    }

    fn reaped(&self, sent: u128) {
        let now = unix_ns();
        if !self.json {
            println!(
                "cancel to result (all reaped): {:.3} ms",
                (now - sent) as f64 / 1e6
            );
            return;
        }
        println!(
            "{}",
            json!({"event": "result", "cancel_sent_unix_ns": sent, "result_unix_ns": now})
        );
    }

    fn dropped(&self, solve_id: &str, dropped: u128, acked: u128) {
        if !self.json {
            println!(
                "dropped the handle of solve {solve_id}; the server had read the release {:.3} ms later",
                (acked - dropped) as f64 / 1e6
            );
            return;
        }
        println!(
            "{}",
            json!({
                "event": "dropped",
                "solve_id": solve_id,
                "dropped_unix_ns": dropped,
                "acked_unix_ns": acked,
            })
        );
    }
}

fn describe_reason(r: &CancelReason) -> String {
    if r.message.is_empty() {
        r.cause.to_string()
    } else {
        format!("{} ({})", r.cause, r.message)
    }
}

fn describe_verdict(v: &Verdict) -> String {
    match v {
        Verdict::Cancelled(r) => format!("cancelled: {}", describe_reason(r)),
        Verdict::Error(e) => format!("error: {}: {}", e.kind, e.message),
        other => other.to_string(),
    }
}

fn reason_json(r: &CancelReason) -> Value {
    json!({"cause": r.cause.to_string(), "message": r.message})
}

fn attempt_json(a: &Attempt, o: &Outcome) -> Value {
    json!({
        "prover": a.prover,
        "outcome": a.outcome.to_string(),
        "host_outcome": HostOutcome::of_attempt(a, o.deadline).to_string(),
        "answer": a.answer.to_string(),
        "status": a.status,
        "message": a.message,
        "elapsed_us": a.elapsed.as_micros() as u64,
        "output_bytes": a.output_bytes,
        "exit": match a.exit {
            Exit::NotStarted => "notStarted".to_string(),
            Exit::Code(c) => format!("code {c}"),
            Exit::Signal(s) => format!("signal {s}"),
            Exit::Other(n) => format!("#{n}"),
        },
        "stop": a.stop.as_ref().map_or(Value::Null, |s| json!({
            "reason": reason_json(&s.reason),
            "latency_us": s.latency.as_micros() as u64,
            "escalated": s.escalated,
        })),
    })
}
