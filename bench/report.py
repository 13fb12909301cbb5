"""The markdown report, written from results.json (so it can be re-rendered without re-running:
`python -m bench.report docs/bench/results.json`)."""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench import cache_report, plots
from bench.portfolio import PROVERS, InstanceResult
from bench.preemption.measure import MECHANISMS
from bench.stats import summary
from bench.summary import TRIVIAL_S, Group, by_format, group, nontrivial, overall, virtual_best

REPORT = "report.md"
CDF = "latency-cdf.png"
SCATTER = "portfolio-vs-sequential.png"

_MECHANISM = {
    "proofrace": "proofrace",
    "polling": "100 ms polling flag, then SIGKILL",
    "pysmt": "pySMT `Portfolio`",
}
_TRIGGER = {
    "cancel": "cancel call → all attempts reaped",
    "drop": "token dropped → all attempts reaped",
    "first_success": "first success → losers reaped",
}


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _seconds(timed: dict[str, Any]) -> str:
    shown = f"{timed['seconds']:.3f}" if timed["seconds"] < 10 else f"{timed['seconds']:.2f}"
    solved = timed["answer"] in ("proved", "refuted")
    return shown if solved else f"{shown} ({timed['answer']})"


def _p99(latency: dict[str, Any], trigger: str, mechanism: str, k: int) -> str:
    values = latency["samples"].get(trigger, {}).get(mechanism, {}).get(str(k), [])
    return f"{_ms(summary(values)['p99'])} ms" if values else "n/a"


# --- sections ----------------------------------------------------------------------------


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    provers = ", ".join(
        f"{name} {info['package'] or info['reports']}" for name, info in m["provers"].items()
    )
    libraries = ", ".join(f"{name} {v}" for name, v in m["libraries"].items())
    start, end = m["load_at_start"], m["load_at_end"]
    rows = [
        ["processor", f"{m['cpu']}, {m['cores']} cores"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["system", f"{m['system']}, Linux {m['kernel']}, Python {m['python']}"],
        ["provers (Debian packages)", provers],
        ["Python libraries", libraries],
        ["load average (1, 5, 15 min)", f"{_load(start)} at the start, {_load(end)} at the end"],
    ]
    return [
        "## The machine",
        "",
        *_table(["", ""], rows, "ll"),
        "**The machine is shared**: other engineers were building and testing on it during the "
        "run. Absolute times carry that noise. Every comparison below was measured in the same "
        "run, the contenders interleaved instance by instance (or cell by cell), so read the "
        "ratios rather than the absolute times.",
        "",
    ]


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def _headline(
    results: dict[str, Any], whole: Group, hard: Group, portfolio: list[InstanceResult]
) -> list[str]:
    latency = results["latency"]
    k = max(int(x) for x in results["plan"]["attempts"])
    top = max(portfolio, key=lambda r: r.sequential.seconds / r.portfolio.seconds)
    hard_names = {r.instance.name for r in nontrivial(portfolio, results["plan"]["timeout_s"])}
    lines = [
        "## Headline",
        "",
        f"- **Speedup over sequential: {whole.speedup:.2f}x** in total time over the "
        f"{whole.instances} instances (sequential {whole.sequential.seconds:.1f} s, the race "
        f"{whole.portfolio.seconds:.1f} s). On the {hard.instances} instances whose fastest "
        f"prover needs at least {TRIVIAL_S * 1e3:.0f} ms: {hard.speedup:.2f}x in total, "
        f"{hard.geomean_speedup:.2f}x geometric mean per instance. At most, per instance, "
        f"{top.sequential.seconds / top.portfolio.seconds:.0f}x (`{top.instance.name}`: "
        f"{top.sequential.seconds:.2f} s against {top.portfolio.seconds:.2f} s); on the "
        f"{whole.instances - hard.instances} trivial ones the race's fixed cost makes it slower "
        f"(geometric mean over all instances {whole.geomean_speedup:.2f}x).",
        f"- **Ratio to the virtual best solver: {whole.vbs_ratio:.2f}** (the race's total time "
        f"over the oracle's, {whole.vbs.seconds:.1f} s; 1.00 would match the oracle); "
        f"{hard.vbs_ratio:.2f} on the non-trivial instances.",
        f"- **Preemption p99 with {k} attempts to stop**:",
        f"  - first success → losers reaped: proofrace "
        f"{_p99(latency, 'first_success', 'proofrace', k)}, 100 ms polling "
        f"{_p99(latency, 'first_success', 'polling', k)}, pySMT "
        f"{_p99(latency, 'first_success', 'pysmt', k)};",
        f"  - cancel → all reaped: proofrace {_p99(latency, 'cancel', 'proofrace', k)} "
        f"(client-side, round trip included), 100 ms polling "
        f"{_p99(latency, 'cancel', 'polling', k)};",
        f"  - token dropped → all reaped: proofrace {_p99(latency, 'drop', 'proofrace', k)}.",
        "",
        "The echidna host asks for at least 1.5x over sequential before it turns portfolio "
        "solving on (on 8 cores), and for an order of magnitude as its end state. Here, with "
        f"two provers per format on 2 cores, the total is {_against(whole.speedup, 1.5)} the "
        "first target. An order of magnitude shows per instance, wherever the prover that "
        "sequential tries first fails or is slow, but not in total: on "
        f"{_first_is_best(portfolio, hard_names)} of the {hard.instances} non-trivial "
        "instances that prover is already the fastest, and there the race can at best match "
        "it.",
        "",
    ]
    return lines


def _against(value: float, target: float) -> str:
    return "above" if value >= target else "below"


def _first_is_best(portfolio: list[InstanceResult], names: set[str]) -> int:
    """Instances on which the prover that sequential tries first is the fastest decisive one."""
    count = 0
    for r in portfolio:
        first = r.single[PROVERS[r.instance.format][0]]
        solved = [t.seconds for t in r.single.values() if t.solved]
        count += r.instance.name in names and first.solved and first.seconds == min(solved)
    return count


def _corpus(results: dict[str, Any], portfolio: list[InstanceResult]) -> list[str]:
    counts = Counter((r.instance.source, r.instance.format) for r in portfolio)
    known = Counter(r.instance.source for r in portfolio if r.instance.expected)
    sources = results["corpus"]["sources"]
    rows = []
    for source, how in sources.items():
        formats = ", ".join(f"{n} {fmt}" for (s, fmt), n in sorted(counts.items()) if s == source)
        total = sum(n for (s, _), n in counts.items() if s == source)
        rows.append([f"`{source}`", formats, f"{known[source]} of {total}", how])
    return [
        "## The corpus",
        "",
        "Real instances written by others. They are not in the repository: "
        "`python -m bench.corpus` fetches or generates them into a cache directory "
        "(`~/.cache/proofrace/corpus` by default, or `$PROOFRACE_CORPUS`), with a "
        "`manifest.json` giving each one's origin, expected verdict and, for TPTP, rating.",
        "",
        *_table(["source", "instances", "expected verdict known", "obtained from"], rows, "llll"),
        "- `tptp-e`: the TPTP problems of E's example set, includes inlined (two problems whose "
        "axiom files the set does not ship are left out); expected verdicts and ratings are "
        "the TPTP library's own header fields.",
        "- `cadical-tests`: CaDiCaL's regression CNFs; expected verdicts from the exit codes its "
        "own test script expects.",
        "- `genhard`: pigeonhole, mutilated chessboard, parity and ordering principles from "
        "python-sat's `pysat.examples.genhard`, each in DIMACS and translated to SMT-LIB2 "
        "(QF_UF, one Boolean per variable). All unsatisfiable.",
        "",
    ]


def _contenders(g: Group) -> list[list[str]]:
    def row(name: str, solved: int, seconds: float, wrong: int) -> list[str]:
        ratio = seconds / g.portfolio.seconds
        return [name, f"{solved}/{g.instances}", f"{seconds:.1f}", f"{ratio:.2f}", str(wrong)]

    rows = [
        row(
            f"sequential ({' then '.join(PROVERS[g.name])})"
            if g.name in PROVERS
            else "sequential (each format's fixed order)",
            g.sequential.solved,
            g.sequential.seconds,
            g.sequential.wrong,
        )
    ]
    for prover, tally in g.single.items():
        best = " (best single)" if g.name != "all" and prover == g.best_single else ""
        label = f"best single: {prover}" if g.name == "all" else f"{prover} alone{best}"
        rows.append(row(label, tally.solved, tally.seconds, tally.wrong))
    rows.append(row("virtual best (oracle)", g.vbs.solved, g.vbs.seconds, g.vbs.wrong))
    rows.append(
        row("**proofrace firstWins**", g.portfolio.solved, g.portfolio.seconds, g.portfolio.wrong)
    )
    return rows


_CONTENDER_HEADER = ["contender", "solved", "total time (s)", "÷ race time", "wrong answers"]


def _portfolio(results: dict[str, Any], portfolio: list[InstanceResult]) -> list[str]:
    timeout = results["plan"]["timeout_s"]
    groups = by_format(portfolio, timeout)
    whole = overall(groups, portfolio, timeout)
    lines = [
        "## 1. Portfolio against sequential, the best single prover and the virtual best",
        "",
        f"Each instance, one after another, with a limit of {timeout:g} s per prover:",
        "- **sequential** is the host's way today: one prover after another in a fixed order, "
        "each a direct subprocess with the limit, until one answers decisively;",
        "- each **single prover** runs directly with the limit (its run inside the sequential "
        "one is reused when the sequential run got to it);",
        "- **proofrace firstWins** races the same provers through the real service (a client "
        "on loopback; time from the `solve` call until `result()` answers), with the same "
        "limit as its deadline;",
        "- the **virtual best** is the oracle that runs only the fastest decisive prover.",
        "",
        "Provers, command lines and verdict rules are the service's own registry entries in "
        "every case; only how they are driven differs. An unsolved instance costs the time "
        "actually spent (up to the limit per prover). Times are wall-clock.",
        "",
        "**All instances** (the best single prover is each format's best):",
        "",
        *_table(_CONTENDER_HEADER, _contenders(whole)),
        f"Speedup of the race over sequential: **{whole.speedup:.2f}x** in total; geometric mean "
        f"of the per-instance ratio {whole.geomean_speedup:.2f}x. Race time over virtual best: "
        f"**{whole.vbs_ratio:.2f}**.",
        "",
    ]
    for fmt, g in groups.items():
        lines += [
            f"**{fmt}** ({g.instances} instances): speedup over sequential {g.speedup:.2f}x, "
            f"race over virtual best {g.vbs_ratio:.2f}.",
            "",
            *_table(_CONTENDER_HEADER, _contenders(g)),
        ]
    lines += [*_where(portfolio, timeout), f"![per-instance scatter]({SCATTER})", ""]
    return lines


def _where(portfolio: list[InstanceResult], timeout: float) -> list[str]:
    """Where the time goes: the race pays a fixed cost, and wins where the order is wrong."""
    hard = nontrivial(portfolio, timeout)
    easy = [r for r in portfolio if r not in hard]
    faster = sum(r.portfolio.seconds < r.sequential.seconds for r in hard)
    added = [r.portfolio.seconds - virtual_best(r, timeout).seconds for r in easy]
    lines = ["Where the difference comes from:", ""]
    if easy:
        lines.append(
            f"- {_count(len(easy), 'instance')} take the fastest prover under "
            f"{TRIVIAL_S * 1e3:.0f} ms. On those the race adds "
            f"{statistics.median(added) * 1e3:.1f} ms at the median over the virtual best: the "
            "round trip, the scratch directory, and starting two provers on two cores."
        )
    if hard:
        lines.append(
            f"- Of the {len(hard)} others, the race is faster than sequential on {faster}: "
            "wherever the prover that sequential tries first is the slower one (or fails), "
            "the race does not wait for it. Where one prover is much faster and tried first, "
            "the race is a little slower: its two provers share two cores with the server "
            "and the client."
        )
    alone = [r for r in portfolio if r.portfolio.solved and not virtual_best(r, timeout).solved]
    if alone:
        names = ", ".join(f"`{r.instance.name}`" for r in alone)
        lines.append(
            f"- The race solved {_count(len(alone), 'instance')} that no prover solved alone "
            f"in this run ({names}): a prover's time on some problems varies a lot from one "
            "run to the next, and the race caught a fast run."
        )
    return [*lines, ""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _latency(results: dict[str, Any]) -> list[str]:
    latency = results["latency"]
    plan = results["plan"]
    rows = []
    for trigger, label in _TRIGGER.items():
        by_mechanism = latency["samples"].get(trigger, {})
        for k in plan["attempts"]:
            for mechanism in MECHANISMS:
                values = by_mechanism.get(mechanism, {}).get(str(k))
                if values is None:
                    continue
                spoiled = latency["spoiled"].get(mechanism, {}).get(str(k), 0)
                s = summary(values)
                cells = [_ms(s[q]) for q in ("p50", "p90", "p99", "max")] if values else ["-"] * 4
                note = f" ({spoiled} left out)" if trigger == "first_success" and spoiled else ""
                rows.append([label, str(k), _MECHANISM[mechanism], *cells, f"{len(values)}{note}"])
    unavailable = [f"- {m}: {why}" for m, why in latency.get("unavailable", {}).items()]
    runs, first_runs = plan["latency_runs"], plan["first_success_runs"]
    return [
        "## 2. Preemption latency",
        "",
        f"{runs} races per row ({first_runs} for first success, whose races take seconds); "
        "milliseconds. Nearest-rank percentiles: with fewer than 100 races, p99 is the "
        "largest sample.",
        "",
        "- **cancel**: a race of k real SAT solvers (cadical and minisat with different seeds, "
        "as in `bench/core.py`) on a hard pigeonhole problem, cancelled once every process "
        "runs. proofrace: the client's `cancel` call until `result()` answers, which it does "
        "only after every process is reaped (a round trip is included). Polling: the flag "
        "raised until every worker has killed and reaped its process; the flag goes up at a "
        "random moment, 100 to 200 ms after the start, so the workers' polling phases are "
        "spread as they would be in use.",
        "- **drop**: the same race; the client releases its token and the server cancels "
        "with `tokenDropped`; measured until the server logs every process reaped (same "
        "clock). Neither the polling flag nor pySMT has a handle whose loss stops anything, "
        "so they have no row.",
        f"- **first success**: z3 races k copies of cvc5 (seeds 1..k) on `{plan['smt_problem']}`"
        " from the corpus, on which z3 is about twice as fast as cvc5 (pySMT: the same two "
        "solvers through their Python bindings, as pySMT drives them). From the coordinator "
        "learning the winner's answer until the last loser is reaped. A race that z3 did not "
        "win with every loser still searching is left out and counted. pySMT sends SIGTERM "
        "to the losers but never waits for them; the harness joins them right after "
        "`solve()` returns, so its figure includes that reaping. pySMT runs the solvers' "
        "Python bindings (z3-solver and cvc5 from PyPI, versions above), newer builds than "
        "the Debian binaries the other two run: the races differ in solver speed, not in how "
        "the losers are stopped.",
        "",
        "proofrace sends SIGTERM to each loser's process group (SIGKILL after a grace "
        "period) and reaps it through a pidfd, in the trigger's own call stack. With 8 "
        "attempts on 2 cores, every stop also waits for CPU time among the busy solvers.",
        "",
        *_table(
            ["trigger", "attempts to stop", "mechanism", "p50", "p90", "p99", "max", "races"],
            rows,
            "lrlrrrrr",
        ),
        *(["Not measured:", "", *unavailable, ""] if unavailable else []),
        f"![latency CDF]({CDF})",
        "",
    ]


def _overhead(results: dict[str, Any]) -> list[str]:
    o = results["overhead"]
    trivial = o["trivial"]
    direct, service = summary(trivial["direct_ms"]), summary(trivial["service_ms"])
    rows = [
        [name, *[_ms(s[q]) for q in ("p50", "p90", "p99", "max")]]
        for name, s in (("z3 run directly", direct), ("through proofrace", service))
    ]
    rates = [
        [
            clients,
            f"{o['rate']['service'][clients]:.0f}",
            f"{o['rate']['direct'][clients]:.0f}",
            f"{o['rate']['service'][clients] / o['rate']['direct'][clients]:.2f}",
        ]
        for clients in o["rate"]["service"]
    ]
    memory = o["memory"]
    return [
        "## 3. Service overhead",
        "",
        f"**A trivial solve** (z3 on `samples/distinct.smt2`, {len(trivial['direct_ms'])} in a "
        "row each), ms:",
        "",
        *_table(["", "p50", "p90", "p99", "max"], rows),
        f"At the median the service adds {service['p50'] - direct['p50']:.1f} "
        f"ms ({service['p50'] / direct['p50']:.2f}x the direct run): the RPC round trips, "
        "the scratch directory and input file, and supervision (pidfd, output scanning, "
        "reaping).",
        "",
        "**Solves per second** of a two-clause CNF on minisat (about a millisecond of prover "
        "work, so this is the service's own capacity). Each client is its own connection "
        "solving one problem after another; the ceiling is the same number of threads running "
        "the binary directly. Clients, server and provers share the 2 cores.",
        "",
        *_table(["concurrent clients", "through proofrace", "run directly", "ratio"], rates),
        "**Server memory** (resident set of the server process):",
        f"- per idle connection: {memory['idle_connection_bytes'] / 1024:.1f} KiB "
        f"({memory['idle_connections']} connections opened, each made one call);",
        f"- per in-flight solve: {memory['inflight_solve_bytes'] / 1024:.1f} KiB "
        f"({memory['inflight_solves']} solves in flight on one connection, each with one "
        "attempt whose process only sleeps, so only the server's own bookkeeping counts).",
        "",
    ]


def _instances(portfolio: list[InstanceResult], timeout: float) -> list[str]:
    lines = [
        "## Per-instance times",
        "",
        "Seconds. An unsolved entry shows the time spent and why it gave up. "
        "Rating: the TPTP difficulty rating (0: every system solves it, 1: none).",
        "",
    ]
    for fmt, provers in PROVERS.items():
        chosen = [r for r in portfolio if r.instance.format == fmt]
        if not chosen:
            continue
        rows = []
        for r in chosen:
            data = {p: {"answer": t.answer, "seconds": t.seconds} for p, t in r.single.items()}
            best = virtual_best(r, timeout)
            rows.append(
                [
                    f"`{r.instance.name}`",
                    r.instance.expected or "?",
                    "" if r.instance.rating is None else f"{r.instance.rating:.2f}",
                    *[_seconds(data[p]) for p in provers],
                    _seconds({"answer": r.sequential.answer, "seconds": r.sequential.seconds}),
                    _seconds({"answer": best.answer, "seconds": best.seconds}),
                    _seconds({"answer": r.portfolio.answer, "seconds": r.portfolio.seconds})
                    + (f" {r.winner}" if r.winner else ""),
                ]
            )
        lines += [
            f"**{fmt}**",
            "",
            *_table(
                ["instance", "expected", "rating", *provers, "sequential", "virtual best",
                 "race (winner)"],
                rows,
                "lll" + "r" * (len(provers) + 3),
            ),
        ]  # fmt: skip
    return lines


def _reproduce() -> list[str]:
    return [
        "## Reproducing",
        "",
        "```sh",
        "pip install -e '.[bench]'   # python-sat, pysmt with z3-solver and cvc5, matplotlib, tqdm",
        "python -m bench.corpus      # once: fetch (apt source packages) and generate the corpus",
        "python -m bench             # every measurement, then this report (about 15 min here)",
        "python -m bench --smoke     # seconds: a tiny corpus, a few races (what CI runs)",
        "python -m bench.cache       # section 4: the corpus cold and warm, cache-hit latency",
        "python -m bench.report docs/bench/results.json   # re-render from the samples",
        "```",
        "",
        "`python -m bench.corpus` needs `apt-get` and `dpkg-source` (Debian's dpkg-dev) for the "
        "TPTP and CaDiCaL sets. It adds `deb-src` lines derived from the system's own apt "
        "sources in a private apt directory; the system's apt configuration is left alone.",
        "",
    ]


def _floor(out: Path) -> list[str]:
    """The figures of `bench/core.py` against its bare loops, kept in `floor.md` beside the
    report (they come from runs of their own, not from this one)."""
    floor = out / "floor.md"
    if not floor.exists():
        return []
    _title, _, body = floor.read_text().partition("\n")
    # Its sections go one level down, under this report's section 5.
    lines = [f"#{line}" if line.startswith("#") else line for line in body.strip().splitlines()]
    return [
        "## 5. The floor: preemption and fixed cost against bare loops",
        "",
        "From separate runs of `python bench/core.py`, kept in [`floor.md`](floor.md):",
        *lines,
        "",
    ]


def write_report(results: dict[str, Any], out: Path) -> Path:
    timeout = results["plan"]["timeout_s"]
    portfolio = [InstanceResult.from_json(r) for r in results["portfolio"]]
    groups = by_format(portfolio, timeout)
    whole = overall(groups, portfolio, timeout)
    hard = group("non-trivial", nontrivial(portfolio, timeout), timeout)
    plots.latency_cdf(results["latency"], out / CDF)
    plots.portfolio_scatter(results["portfolio"], timeout, out / SCATTER)
    smoke = " (smoke-sized: not a measurement)" if results.get("smoke") else ""
    lines = [
        f"# proofrace on real problems: portfolio speedup and preemption latency{smoke}",
        "",
        f"Produced by `python -m bench` on {results['generated']} (the run took "
        f"{results['duration_s'] / 60:.1f} min). Every figure here comes from that one run on "
        "the machine described below; `results.json` beside this file holds every sample.",
        "",
        *_headline(results, whole, hard, portfolio),
        *_machine(results),
        *_corpus(results, portfolio),
        *_portfolio(results, portfolio),
        *_latency(results),
        *_overhead(results),
        *cache_report.section(out),
        *_floor(out),
        *_instances(portfolio, timeout),
        *_reproduce(),
    ]
    path = out / REPORT
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/bench/results.json")
    print(write_report(json.loads(source.read_text()), source.parent))
