//! Every one of the echidna host's eight cases, each produced by a real problem and
//! real provers on a server of our own, with the data each case carries.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{sample, Scratch, Server, EASY, HARD, REFUTABLE};
use proofrace_client::{
    AttemptOutcome, CancelCause, Client, Conflict, Format, Grounds, HostOutcome, Location, Outcome,
    SolveRequest, Strategy, Verdict,
};

/// Registry entries beside the built-in provers:
/// * `z3-strict`: z3, with a rule that reads "does not support" as an unsupported
///   feature (the built-in rules read only "unsupported"/"not supported" so).
/// * `minisat-misconfigured`: minisat with an option value it refuses: it fails
///   (`ERROR! ...`, exit code 1) on any problem.
/// * `broken`: an executable whose interpreter does not exist: it cannot be started.
/// * `liar`: answers `sat` to anything, without a model.
fn registry(dir: &std::path::Path) -> String {
    let broken = dir.join("broken-prover");
    std::fs::write(&broken, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("host-cases.toml");
    std::fs::write(
        &path,
        format!(
            r#"[z3-strict]
command = ["z3", "-smt2", "{{input}}"]
formats = ["smtlib2"]
default = false
rules = [
  ['^unsat$', "proved"],
  ['^sat$', "refuted"],
  ['^\(error "(?P<message>.*does not support.*?)"\)?$', "unsupportedFeature"],
  ['^\(error "(?P<message>[^"]*)', "invalidInput"],
]

[minisat-misconfigured]
command = ["minisat", "-verb=0", "-mem-lim=1", "{{input}}"]
formats = ["dimacs"]
default = false
rules = [
  ['^UNSATISFIABLE$', "proved"],
  ['^SATISFIABLE$', "refuted"],
  ['^ERROR! (?P<message>.*)', "proverError"],
]

[broken]
command = [{broken:?}, "{{input}}"]
formats = ["tptp"]
default = false
rules = [['SZS status Theorem', "proved"]]

[liar]
command = ["sh", "-c", "echo sat", "liar", "{{input}}"]
formats = ["smtlib2"]
default = false
rules = [['^unsat$', "proved"], ['^sat$', "refuted"]]
"#
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn host(
    client: &Client,
    content: &[u8],
    format: Format,
    provers: &[&str],
) -> (Outcome, HostOutcome) {
    let mut request = SolveRequest::new(content.to_vec()).format(format);
    for p in provers {
        request = request.prover(*p);
    }
    let outcome = client.solve(request).result().await.expect("result");
    let host = outcome.host_outcome();
    assert_eq!(
        u128::from(host.elapsed().as_millis() as u64),
        outcome.elapsed.as_millis()
    );
    (outcome, host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_case_from_a_real_problem() {
    let dir = Scratch::new("host-cases");
    let server = Server::own(
        &["--provers-file", &registry(&dir)],
        // The request below leaves timeoutMs at 0: this default is the limit that applies.
        &[("PROOFRACE_DEFAULT_TIMEOUT_S", "2")],
    );
    let client = Client::connect(&server.addr).await.expect("connect");

    // 1. proved: unsat of the negated goal.
    let (o, h) = host(&client, &sample(EASY), Format::Smtlib2, &["z3"]).await;
    assert!(
        matches!(h, HostOutcome::Proved { ref prover, .. } if prover == "z3"),
        "{h:?}"
    );
    assert_ne!(
        o.grounds,
        Grounds::None,
        "a decisive answer says how it was established"
    );

    // 2. noProofFound: a countermodel.
    let (_, h) = host(&client, &sample(REFUTABLE), Format::Smtlib2, &["z3"]).await;
    assert!(
        matches!(h, HostOutcome::NoProofFound { ref reason, .. } if reason.contains("sat")),
        "{h:?}"
    );

    // 3. invalidInput: an undeclared constant, with the prover's message and location.
    let bad = b"(set-logic QF_LIA)\n(declare-fun x () Int)\n(assert (> y 2))\n(check-sat)\n";
    let (_, h) = host(&client, bad, Format::Smtlib2, &["z3"]).await;
    match h {
        HostOutcome::InvalidInput {
            reason, location, ..
        } => {
            assert!(reason.contains("unknown constant y"), "{reason}");
            assert_eq!(
                location,
                Some(Location {
                    line: 3,
                    column: Some(11)
                })
            );
        }
        other => panic!("want invalidInput, got {other:?}"),
    }

    // 4. unsupportedFeature: nonlinear arithmetic in a linear logic.
    let nonlinear =
        b"(set-logic QF_LIA)\n(declare-fun x () Int)\n(assert (> (* x x) 2))\n(check-sat)\n";
    let (o, h) = host(&client, nonlinear, Format::Smtlib2, &["z3-strict"]).await;
    assert_eq!(o.attempts[0].outcome, AttemptOutcome::UnsupportedFeature);
    assert!(
        matches!(h, HostOutcome::UnsupportedFeature { ref reason, .. } if reason.contains("nonlinear")),
        "{h:?}"
    );

    // 5. timeout: the request gave no deadline, so the server's default applied.
    let (o, h) = host(&client, &sample(HARD), Format::Smtlib2, &["z3"]).await;
    assert_eq!(o.deadline, Duration::from_secs(2));
    assert!(
        matches!(h, HostOutcome::Timeout { limit_secs: 2, .. }),
        "{h:?}"
    );

    // 6. inconsistentPremises: contradictory axioms.
    let contradictory = b"fof(a1, axiom, p).\nfof(a2, axiom, ~p).\nfof(c, conjecture, q).\n";
    let (_, h) = host(&client, contradictory, Format::Tptp, &["eprover"]).await;
    assert!(
        matches!(h, HostOutcome::InconsistentPremises { ref prover, .. } if prover == "eprover"),
        "{h:?}"
    );

    // 7. proverError: a prover that fails (here, on its own options) with exit code 1.
    let (_, h) = host(
        &client,
        &sample("pigeonhole-6.cnf"),
        Format::Dimacs,
        &["minisat-misconfigured"],
    )
    .await;
    match h {
        HostOutcome::ProverError {
            reason, exit_code, ..
        } => {
            assert!(reason.contains("too small for option"), "{reason}");
            assert_eq!(exit_code, Some(1));
        }
        other => panic!("want proverError, got {other:?}"),
    }

    // 8. systemError: the prover's program cannot be started.
    let (_, h) = host(&client, &sample("socrates.p"), Format::Tptp, &["broken"]).await;
    assert!(
        matches!(h, HostOutcome::SystemError { ref reason, .. } if reason.contains("could not start")),
        "{h:?}"
    );

    // Decisive answers that contradict each other: the verdict is unknown, the
    // conflict names both sides, and the host sees a prover error.
    let request = SolveRequest::new(sample(EASY))
        .prover("z3")
        .prover("liar")
        .strategy(Strategy::All);
    let o = client.solve(request).result().await.expect("result");
    assert_eq!(o.verdict, Verdict::Unknown);
    assert_eq!(
        o.conflict,
        Some(Conflict {
            proved: vec!["z3".into()],
            refuted: vec!["liar".into()]
        })
    );
    assert!(
        matches!(o.host_outcome(), HostOutcome::ProverError { ref reason, .. } if reason.contains("refuted by liar")),
        "{:?}",
        o.host_outcome()
    );

    // And the ninth, which is not a failure: a cancelled race.
    let handle = client.solve(SolveRequest::new(sample(HARD)).prover("z3"));
    drop(handle.cancel("the host changed its mind")); // takes effect unawaited
    let h = handle.result().await.expect("result").host_outcome();
    assert!(
        matches!(h, HostOutcome::Cancelled { ref reason, .. } if reason.cause == CancelCause::Client),
        "{h:?}"
    );
    assert!(server.prover_pids().is_empty());
}
