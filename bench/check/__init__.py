"""A corpus of problems with known answers, run through the service to count right and
wrong verdicts. `python -m bench.check` drives it."""
