"""Run the check corpus through a real server, one problem at a time, and count the verdicts.

Each problem with a known answer gets one of four marks:
- correct: the verdict is the known answer;
- wrong: a decisive verdict that is not;
- undecided: unknown (a conflict included) or timeout;
- error: an error verdict.

The runner also works with servers that predate verdict grounds and `confirm` (it reads
neither field there), so the same corpus measures the service before and after.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.corpus.manifest import Instance, Manifest
from proofrace.client import Client

MARKS = ("correct", "wrong", "undecided", "error")


@dataclass(frozen=True)
class Checked:
    name: str
    format: str
    expected: str
    verdict: str
    mark: str
    seconds: float
    winner: str = ""
    grounds: str = ""
    conflict: str = ""
    attempts: dict[str, str] = field(default_factory=dict)  # prover -> outcome/answer/grounds


def mark(expected: str, verdict: str) -> str:
    if verdict == expected:
        return "correct"
    if verdict in ("proved", "refuted"):
        return "wrong"
    if verdict == "error":
        return "error"
    return "undecided"


async def check(
    address: str,
    corpus: Path,
    instances: list[Instance],
    timeout_s: float,
    confirm: bool,
    say: Any = print,
) -> list[Checked]:
    results = []
    options: dict[str, Any] = {"time_limit": timeout_s}
    if confirm:
        options["confirm"] = True
    async with Client.connect(address) as client:
        for number, instance in enumerate(instances, start=1):
            if instance.expected is None:
                continue
            content = (corpus / instance.path).read_bytes()
            started = time.perf_counter()
            job = await client.solve(content, goal_id=instance.name, **options)
            outcome = await job.result()
            seconds = time.perf_counter() - started
            verdict = outcome.verdict.value
            grounds = getattr(outcome, "grounds", None)
            conflict = getattr(outcome, "conflict", None)
            checked = Checked(
                name=instance.name,
                format=instance.format,
                expected=instance.expected,
                verdict=verdict,
                mark=mark(instance.expected, verdict),
                seconds=round(seconds, 4),
                winner=outcome.winner,
                grounds=grounds.value if grounds is not None else "",
                conflict=(
                    f"proved: {', '.join(conflict.proved)}; refuted: {', '.join(conflict.refuted)}"
                    if conflict is not None
                    else ""
                ),
                attempts={
                    a.prover: "/".join(
                        x
                        for x in (
                            a.outcome.value,
                            a.answer.value,
                            getattr(getattr(a, "grounds", None), "value", ""),
                        )
                        if x
                    )
                    for a in outcome.attempts
                },
            )
            results.append(checked)
            if checked.mark != "correct":
                say(
                    f"  [{number}/{len(instances)}] {instance.name}: {checked.mark}"
                    f" ({verdict}, expected {instance.expected}; winner {outcome.winner or '-'})"
                )
    return results


def counts(results: list[Checked]) -> dict[str, int]:
    tally = dict.fromkeys(MARKS, 0)
    for r in results:
        tally[r.mark] += 1
    return tally


def save(path: Path, label: str, settings: dict[str, Any], results: list[Checked]) -> None:
    document = {
        "label": label,
        "settings": settings,
        "counts": counts(results),
        "results": [asdict(r) for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def load_manifest(corpus: Path) -> Manifest:
    return Manifest.load(corpus)


def run_sync(*args: Any, **kwargs: Any) -> list[Checked]:
    import capnp

    async def main() -> list[Checked]:
        return await check(*args, **kwargs)

    result: list[Checked] = asyncio.run(capnp.run(main()))
    return result
