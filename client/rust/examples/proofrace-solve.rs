//! `proofrace-solve`: send one problem to a proofrace server and print the outcome.
//!
//! ```text
//! proofrace-solve FILE [--addr A] [--prover P]... [--strategy S] [--format F]
//!                 [--timeout-ms N] [--goal-id ID] [--json]
//!                 [--cancel-pipelined REASON | --cancel-after-running REASON
//!                  | --drop-after-running] [--running-timeout-ms N]
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
//!
//! With `--json`, every line printed is one JSON object with an `event` field;
//! instants are wall-clock unix nanoseconds (`*_unix_ns`), comparable with the
//! server's log timestamps on the same machine.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proofrace_client::{
    Attempt, CancelReason, Client, Exit, Format, Outcome, SolveHandle, SolveRequest, SolveStatus,
    Strategy, Verdict,
};

const USAGE: &str = "usage: proofrace-solve FILE [--addr A] [--prover P]... [--strategy S] \
[--format F] [--timeout-ms N] [--goal-id ID] [--json] \
[--cancel-pipelined REASON | --cancel-after-running REASON | --drop-after-running] \
[--running-timeout-ms N]";

#[derive(Debug)]
enum Mode {
    Solve,
    CancelPipelined(String),
    CancelAfterRunning(String),
    DropAfterRunning,
}

#[derive(Debug)]
struct Args {
    addr: String,
    request: SolveRequest,
    json: bool,
    mode: Mode,
    running_timeout: Duration,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut file = None;
    let mut addr = std::env::var("PROOFRACE_ADDR").unwrap_or_else(|_| "127.0.0.1:7777".into());
    let mut provers = Vec::new();
    let mut strategy = Strategy::FirstWins;
    let mut format = Format::Auto;
    let mut timeout_ms = 0u32;
    let mut goal_id = None;
    let mut json = false;
    let mut mode = Mode::Solve;
    let mut running_timeout = Duration::from_secs(30);

    fn value(argv: &mut dyn Iterator<Item = String>, flag: &str) -> Result<String, String> {
        argv.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn number<T: std::str::FromStr>(s: String, flag: &str) -> Result<T, String> {
        s.parse().map_err(|_| format!("{flag}: not a number: {s:?}"))
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
            "--running-timeout-ms" => {
                running_timeout = Duration::from_millis(number(value(&mut argv, &arg)?, &arg)?)
            }
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
    Ok(Args {
        addr,
        request,
        json,
        mode,
        running_timeout,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    // capnp-rpc is !Send: the client and its handles live on this LocalSet.
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proofrace-solve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(&args.addr).await?;
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
            let status = handle.cancel(&reason).await?;
            out.cancelled(sent, &status);
            out.outcome(&handle.result().await?);
            out.reaped(sent);
        }
        Mode::CancelAfterRunning(reason) => {
            let handle = client.solve(args.request);
            let running = wait_all_running(&handle, args.running_timeout).await?;
            out.status("running", &running);
            let sent = unix_ns();
            let status = handle.cancel(&reason).await?;
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
    }
    client.disconnect().await?;
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
        let mut j = Json::object();
        j.str("event", "outcome")
            .str("solve_id", &o.solve_id)
            .str("goal_id", &o.goal_id)
            .str("verdict", &o.verdict.to_string());
        match &o.verdict {
            Verdict::Cancelled(r) => {
                j.raw("cancel_reason", &reason_json(r));
            }
            Verdict::Error(e) => {
                let mut err = Json::object();
                err.str("kind", &e.kind.to_string()).str("message", &e.message);
                j.raw("error", &err.end());
            }
            _ => {}
        }
        j.opt_str("winner", o.winner.as_deref())
            .str("host_outcome", &o.host_outcome().to_string())
            .str("strategy", &o.strategy.to_string())
            .str("format", &o.format.to_string())
            .bool("disagreement", o.disagreement)
            .num("elapsed_us", o.elapsed.as_micros())
            .raw(
                "attempts",
                &format!(
                    "[{}]",
                    o.attempts
                        .iter()
                        .map(attempt_json)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
        println!("{}", j.end());
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
        let mut j = Json::object();
        j.str("event", event)
            .str("solve_id", &s.solve_id)
            .str("state", &s.state.to_string())
            .num("attempts", s.attempts.len() as u128)
            .num("at_unix_ns", unix_ns());
        println!("{}", j.end());
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
        let mut j = Json::object();
        j.str("event", "cancelled")
            .str("solve_id", &s.solve_id)
            .str("state", &s.state.to_string())
            .num("cancel_sent_unix_ns", sent)
            .num("cancel_answered_unix_ns", answered);
        if let Some(r) = &s.cancel_reason {
            j.raw("cancel_reason", &reason_json(r));
        }
        println!("{}", j.end());
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
        let mut j = Json::object();
        j.str("event", "result")
            .num("cancel_sent_unix_ns", sent)
            .num("result_unix_ns", now);
        println!("{}", j.end());
    }

    fn dropped(&self, solve_id: &str, dropped: u128, acked: u128) {
        if !self.json {
            println!(
                "dropped the handle of solve {solve_id}; the server had read the release {:.3} ms later",
                (acked - dropped) as f64 / 1e6
            );
            return;
        }
        let mut j = Json::object();
        j.str("event", "dropped")
            .str("solve_id", solve_id)
            .num("dropped_unix_ns", dropped)
            .num("acked_unix_ns", acked);
        println!("{}", j.end());
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

fn reason_json(r: &CancelReason) -> String {
    let mut j = Json::object();
    j.str("cause", &r.cause.to_string()).str("message", &r.message);
    j.end()
}

fn attempt_json(a: &Attempt) -> String {
    let mut j = Json::object();
    j.str("prover", &a.prover)
        .str("outcome", &a.outcome.to_string())
        .str("host_outcome", &a.host_outcome().to_string())
        .str("answer", &a.answer.to_string())
        .str("status", &a.status)
        .str("message", &a.message)
        .num("elapsed_us", a.elapsed.as_micros())
        .num("output_bytes", u128::from(a.output_bytes));
    match a.exit {
        Exit::NotStarted => j.str("exit", "notStarted"),
        Exit::Code(c) => j.str("exit", &format!("code {c}")),
        Exit::Signal(s) => j.str("exit", &format!("signal {s}")),
        Exit::Other(n) => j.str("exit", &format!("#{n}")),
    };
    if let Some(s) = &a.stop {
        let mut stop = Json::object();
        stop.raw("reason", &reason_json(&s.reason))
            .num("latency_us", s.latency.as_micros())
            .bool("escalated", s.escalated);
        j.raw("stop", &stop.end());
    }
    j.end()
}

/// Just enough JSON output for flat records, without a serialization dependency.
struct Json {
    buf: String,
}

impl Json {
    fn object() -> Self {
        Json {
            buf: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        quote(&mut self.buf, k);
        self.buf.push(':');
    }

    fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        quote(&mut self.buf, v);
        self
    }

    fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.raw(k, "null"),
        }
    }

    fn num(&mut self, k: &str, v: u128) -> &mut Self {
        self.key(k);
        self.buf.push_str(&v.to_string());
        self
    }

    fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.buf.push_str(v);
        self
    }

    fn end(&mut self) -> String {
        self.buf.push('}');
        std::mem::take(&mut self.buf)
    }
}

fn quote(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => buf.push_str(&format!("\\u{:04x}", c as u32)),
            c => buf.push(c),
        }
    }
    buf.push('"');
}
