"""What the tests and the benchmarks share to drive proofrace from outside: a real server in
a subprocess and its log, its prover processes, its metrics, a soak workload. Kept out of the
installed package: users of proofrace run none of it."""
