"""The cost of certification per answer: each prover that leaves a certificate is run directly
on each check-corpus problem of its format (as the service would run it, in a directory of its
own), then its certificate is checked the way the service checks it, and that check is timed.

- DIMACS models: checked in-process against every clause;
- SMT-LIB models: the problem with the model's values, solved by the other solver;
- DRAT proofs (cadical-drat): the forward checker, as a process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.corpus.manifest import Manifest
from proofrace.backends.certify import CHECK_FILE, check_dimacs_model
from proofrace.backends.registry import MODEL_FILE, PROOF_FILE, ProverSpec, Registry
from proofrace.backends.smtscript import SyntaxProblem, check_script, read_model, read_script
from proofrace.backends.verdicts import OutputScanner
from proofrace.core import features
from proofrace.core.formats import FILE_SUFFIX
from proofrace.core.model import Format

SOLVE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Cost:
    instance: str
    prover: str
    kind: str  # dimacs-model | smt-model | drat
    solve_s: float
    check_s: float
    result: str  # held | failed | unchecked


def measure(corpus: Path, out: Path) -> list[Cost]:
    manifest = Manifest.load(corpus)
    registry = Registry.load()
    specs = [
        s
        for s in registry.specs.values()
        if (s.model or s.proof) and shutil.which(s.executable) and (s.default or s.proof)
    ]
    costs: list[Cost] = []
    for instance in manifest.instances:
        if instance.expected is None:
            continue
        problem_format = Format(instance.format)
        content = features.read((corpus / instance.path).read_bytes(), problem_format).content
        for spec in specs:
            if problem_format not in spec.formats:
                continue
            cost = _one(spec, instance.name, problem_format, content)
            if cost is not None:
                costs.append(cost)
                print(f"{instance.name} {spec.name}: {cost.kind} {cost.check_s * 1000:.1f} ms")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(c) for c in costs], indent=1) + "\n")
    return costs


def _one(spec: ProverSpec, name: str, problem_format: Format, content: bytes) -> Cost | None:
    with tempfile.TemporaryDirectory(prefix="proofrace-cost-") as scratch:
        workdir = Path(scratch)
        input_name = "problem" + FILE_SUFFIX[problem_format]
        (workdir / input_name).write_bytes(content)
        started = time.perf_counter()
        try:
            done = subprocess.run(
                spec.argv(input_name),
                cwd=workdir,
                capture_output=True,
                timeout=SOLVE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        solve_s = time.perf_counter() - started
        scanner = OutputScanner(spec.rules, 0)
        scanner.feed(done.stdout + done.stderr)
        scanner.close()
        if scanner.error is not None or scanner.answer is None:
            return None
        said = scanner.answer.finding.value
        output = done.stdout.decode(errors="replace")
        if said == "refuted" and spec.model:
            if spec.model == "file":
                path = workdir / MODEL_FILE
                output = path.read_text() if path.is_file() else ""
            if problem_format is Format.DIMACS:
                started = time.perf_counter()
                checked = check_dimacs_model(content, output)
                result = "unchecked" if checked is None else _result(checked[0].value)
                return Cost(name, spec.name, "dimacs-model", solve_s, _since(started), result)
            if problem_format is Format.SMTLIB2:
                return _smt(spec, name, content, output, workdir, solve_s)
        if said == "proved" and spec.proof == "drat":
            started = time.perf_counter()
            checker = [
                part.replace("{python}", sys.executable)
                .replace("{input}", input_name)
                .replace("{proof}", PROOF_FILE)
                for part in spec.check
            ]
            verdict = subprocess.run(checker, cwd=workdir, capture_output=True, check=False)
            text = verdict.stdout.decode()
            result = "held" if "s VERIFIED" in text else "failed" if "NOT" in text else "unchecked"
            return Cost(name, spec.name, "drat", solve_s, _since(started), result)
    return None


def _smt(
    spec: ProverSpec, name: str, content: bytes, output: str, workdir: Path, solve_s: float
) -> Cost | None:
    started = time.perf_counter()
    try:
        script = read_script(content.decode(errors="replace"))
        model = read_model(output)
    except SyntaxProblem:
        return None
    if model is None or not script.checkable:
        return Cost(name, spec.name, "smt-model", solve_s, _since(started), "unchecked")
    (workdir / CHECK_FILE).write_text(check_script(script, model))
    argv = [part.replace("{check}", CHECK_FILE) for part in spec.check]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, check=False)
    said = done.stdout.decode().strip().splitlines()[-1:] or [""]
    result = {"sat": "held", "unsat": "failed"}.get(said[0], "unchecked")
    return Cost(name, spec.name, "smt-model", solve_s, _since(started), result)


def _result(grounds: str) -> str:
    return {"modelChecked": "held", "certificateFailed": "failed"}.get(grounds, "unchecked")


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)
