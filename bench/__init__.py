"""Benchmarks of proofrace on real problems (not tests): `python -m bench` runs them all."""
