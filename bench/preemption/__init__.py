"""Preemption latency: proofrace against the host's 100 ms polling flag and pySMT's Portfolio."""
