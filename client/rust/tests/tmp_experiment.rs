mod common;
use common::*;
use proofrace_client::*;
use std::time::Duration;

#[test]
fn last_user_drop() {
    let server = Server::start();
    let mut ids = vec![];
    for _ in 0..5 {
    run_local(async {
        let client = Client::connect(&server.addr).await.expect("connect");
        let handle = client.solve(SolveRequest::new(sample(HARD)).prover("z3").prover("cvc5"));
        loop {
            let s = handle.status().await.unwrap();
            if s.all_attempts_running() { ids.push(s.solve_id); break; }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(client);
        drop(handle);
        // let the driver run its disconnect
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    }
    for id in ids {
        let f = server.wait_for_event(|e| e["event"] == "solve.finished" && e["solve_id"] == id.as_str(), Duration::from_secs(10)).unwrap();
        println!("{}", f["cause"]);
    }
}
