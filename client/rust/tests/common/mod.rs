//! A live proofrace server for the integration tests.
//!
//! With `PROOFRACE_ADDR` set, the tests use that server (and `PROOFRACE_METRICS_URL`,
//! `http://host:port/metrics`, for the checks that read its counters). Otherwise each
//! test starts its own server on ephemeral ports, from `PROOFRACE_BIN`, else
//! `proofrace` on PATH, else the repository's `.venv/bin/proofrace`, and stops it with
//! SIGTERM when the test ends, so the server reaps its provers.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const EASY: &str = "distinct.smt2"; // unsat in milliseconds
pub const REFUTABLE: &str = "satisfiable.smt2"; // sat in milliseconds
pub const HARD: &str = "pigeonhole-12.smt2"; // z3 and cvc5 run for minutes

/// This crate's directory, as `cargo test` gives it when the tests run: a test binary reused
/// from another checkout (a shared target directory) still reads this checkout's files.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Reads a file of the repository's `samples/`.
pub fn sample(name: &str) -> Vec<u8> {
    let path = crate_dir().join("../../samples").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory of the test's own under the system's temporary directory, removed when it is
/// dropped: on every way out of the test, a failed assertion's included. Declared before the
/// server that uses it, it outlives the server.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("proofrace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // left by a killed run of the same pid
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `condition` every 20 ms until it holds; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server's JSON log lines so far, and a signal for new ones.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<Value>>,
    grew: Condvar,
}

pub struct Server {
    pub addr: String,
    metrics_url: Option<String>,
    child: Option<Child>,
    log: Arc<Log>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Server {
    /// The server at `PROOFRACE_ADDR`, else one of our own.
    pub fn start() -> Server {
        if let Ok(addr) = std::env::var("PROOFRACE_ADDR") {
            return Server {
                addr,
                metrics_url: std::env::var("PROOFRACE_METRICS_URL").ok(),
                child: None,
                log: Arc::default(),
                args: Vec::new(),
                env: Vec::new(),
            };
        }
        Server::own(&[], &[])
    }

    /// A server of our own, with these extra arguments and environment.
    pub fn own(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Server::spawn(args, env)
    }

    /// Stops the server (SIGTERM: it cancels its races as `shutdown` and reaps
    /// its provers) and starts it again on the same address.
    pub fn restart(&mut self) {
        self.stop();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.addr.clone();
        }
        let env = self.env.clone();
        let addr = self.addr.clone();
        *self = Server::spawn(args, env);
        assert_eq!(self.addr, addr);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("our own server").id()
    }

    /// Sends a signal to the server process (STOP, CONT, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Live processes started for this server's attempts (zombies excluded).
    pub fn prover_pids(&self) -> Vec<u32> {
        let mark = format!("PROOFRACE_OWNER={}-", self.pid());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let marked = environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(mark.as_bytes()));
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if marked && !zombie {
                found.push(pid);
            }
        }
        found
    }

    fn spawn(args: Vec<String>, env: Vec<(String, String)>) -> Server {
        let bin = proofrace_bin();
        let mut child = Command::new(&bin)
            .arg("serve")
            .args(&args)
            .args(["--metrics", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            // Every solve races: a verdict cached by an earlier run (the default cache is a file
            // in the user's state directory) must not answer a test. A test may turn it on.
            .env("PROOFRACE_CACHE", "off")
            .env("PROOFRACE_SHARE_RACES", "false")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Anything that is not a JSON line (a crash's traceback) is kept as a string.
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lines.lock().unwrap().push(value);
                sink.grew.notify_all();
            }
        });
        let mut server = Server {
            addr: String::new(),
            metrics_url: None,
            child: Some(child),
            log,
            args,
            env,
        };
        let ready = server
            .wait_for_event(|e| e["event"] == "server.ready", Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "{} did not log server.ready: {:?}",
                    bin.display(),
                    server.log.lines.lock().unwrap()
                )
            });
        server.addr = ready["rpc"][0].as_str().expect("rpc address").to_owned();
        let port = ready["metrics_port"].as_u64().expect("metrics port");
        server.metrics_url = Some(format!("http://127.0.0.1:{port}/metrics"));
        server
    }

    /// True when this test started the server and can read its log.
    pub fn owns_log(&self) -> bool {
        self.child.is_some()
    }

    /// Waits for a log line matching `matches`; `None` after `timeout`.
    pub fn wait_for_event(
        &self,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().find(|e| matches(e)) {
                return Some(found.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// The log lines so far that match `matches`.
    pub fn events(&self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        let lines = self.log.lines.lock().unwrap();
        lines.iter().filter(|e| matches(e)).cloned().collect()
    }

    /// The solve.finished event of `solve_id`.
    pub fn solve_finished(&self, solve_id: &str) -> Value {
        self.wait_for_event(
            |e| e["event"] == "solve.finished" && e["solve_id"] == solve_id,
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("no solve.finished for {solve_id}"))
    }

    /// A gauge (or counter) without labels.
    pub fn gauge(&self, name: &str) -> f64 {
        let url = self.metrics_url.as_deref().expect("the metrics address");
        http_get(url)
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .sum()
    }

    /// Sum of the samples of counter `name` whose labels include `label="value"`.
    ///
    /// # Panics
    ///
    /// When the metrics address is unknown (an external server without
    /// `PROOFRACE_METRICS_URL`).
    pub fn counter(&self, name: &str, label: &str, value: &str) -> f64 {
        let url = self.metrics_url.as_deref().expect(
            "this check reads the server's metrics: set PROOFRACE_METRICS_URL \
             (http://host:port/metrics) beside PROOFRACE_ADDR",
        );
        let text = http_get(url);
        let want = format!("{label}=\"{value}\"");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, number) = l.rsplit_once(' ')?;
                let (metric, labels) = series.split_once('{')?;
                (metric == name && labels.trim_end_matches('}').split(',').any(|kv| kv == want))
                    .then(|| number.parse::<f64>().ok())?
            })
            .fold(0.0, |sum, v| sum + v)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM lets the server stop its races and reap its provers; SIGKILL would
        // leave them running.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn proofrace_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PROOFRACE_BIN") {
        return bin.into();
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("proofrace");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let venv = crate_dir().join("../../.venv/bin/proofrace");
    assert!(
        venv.is_file(),
        "no proofrace server: set PROOFRACE_ADDR, or PROOFRACE_BIN, or put `proofrace` on \
         PATH, or install it in the repository's .venv"
    );
    venv
}

/// A plain HTTP/1.0 GET: enough for the server's /metrics.
fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host).expect("connecting to /metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.0 200"), "GET {url}: {head}");
    body.to_owned()
}
