"""The verdict cache on a corpus re-run: cold against warm, and the latency of a hit.

Usage: python -m bench.cache [--corpus DIR] [--timeout S] [--hits N] [--out FILE] [--smoke]

1. A server with the embedded cache (SQLite, in a fresh state directory) solves every corpus
   instance once, one after another, with the portfolio study's provers and deadline: cold.
2. The same again: warm. Decided instances answer from the cache; undecided ones (timeouts,
   unknowns) are never cached, so they race again and cost what they cost cold.
3. `--hits` solves of decided instances, cycling, each timed from the client's `solve()` to
   `result()` answered (one round trip on loopback TCP), and on the server from the start of
   the lookup to the entry in hand. The same against a shared Redis store on a Unix socket.
Provers started are counted from the server's `attempt.started` log events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import capnp

from bench import cache_report
from bench.corpus import Manifest, default_cache, families
from bench.corpus.build import SOURCES, assemble
from bench.portfolio import PROVERS
from bench.stats import summary
from proofrace.client import Client, Source
from tests.support.redis import redis_server
from tests.support.server import RunningServer, running_server

DOCS = Path(__file__).resolve().parent.parent / "docs" / "bench"


async def solve_all(
    server: RunningServer, corpus: Path, manifest: Manifest, timeout_s: float
) -> dict[str, Any]:
    started_before = len(server.events(event="attempt.started"))
    verdicts: dict[str, str] = {}
    times: dict[str, float] = {}
    sources: dict[str, int] = {}
    began = time.perf_counter()
    async with Client.connect(server.address) as client:
        for instance in manifest.instances:
            job = await client.solve(
                (corpus / instance.path).read_bytes(),
                provers=PROVERS[instance.format],
                time_limit=timeout_s,
                goal_id=instance.name,
            )
            outcome = await job.result()
            times[instance.name] = time.perf_counter() - began - sum(times.values())
            verdicts[instance.name] = outcome.verdict.value
            sources[outcome.source.value] = sources.get(outcome.source.value, 0) + 1
    seconds = time.perf_counter() - began
    decided = sum(v in ("proved", "refuted") for v in verdicts.values())
    return {
        "seconds": seconds,
        "provers_started": len(server.events(event="attempt.started")) - started_before,
        "instances": len(verdicts),
        "decided": decided,
        "sources": sources,
        "verdicts": verdicts,
        "times": times,
    }


async def hit_latency(
    server: RunningServer, corpus: Path, manifest: Manifest, decided: list[str], hits: int
) -> dict[str, Any]:
    by_name = {i.name: i for i in manifest.instances}
    texts = [(by_name[n], (corpus / by_name[n].path).read_bytes()) for n in decided]
    seen_before = len(server.events(event="solve.cached"))
    client_ms: list[float] = []
    async with Client.connect(server.address) as client:
        for i in range(hits):
            instance, text = texts[i % len(texts)]
            began = time.perf_counter()
            job = await client.solve(text, provers=PROVERS[instance.format])
            outcome = await job.result()
            client_ms.append((time.perf_counter() - began) * 1000)
            assert outcome.source is Source.CACHE, instance.name
    # Log lines are written in batches: wait for every hit's line.
    cached = server.wait_for_events(
        lambda e: e["event"] == "solve.cached", seen_before + hits, timeout=30
    )[seen_before:]
    return {
        "client_ms": summary(client_ms),
        "lookup_ms": summary([e["latency_us"] / 1000 for e in cached]),
    }


def server_for(state: Path, env: dict[str, str]) -> Any:
    return running_server(
        ["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--log-level", "info"],
        {"PROOFRACE_CACHE": "sqlite", "PROOFRACE_STATE_DIR": str(state), **env},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=DOCS / "cache.json")
    parser.add_argument("--smoke", action="store_true", help="tiny corpus, few hits")
    args = parser.parse_args()
    corpus = args.corpus or default_cache()
    try:
        manifest = Manifest.load(corpus)
    except FileNotFoundError:
        if args.smoke:
            manifest = assemble(corpus, ["genhard"], families.TINY_SIZES)
        else:
            manifest = assemble(corpus, SOURCES)
    hits = 20 if args.smoke else args.hits
    results: dict[str, Any] = {"timeout_s": args.timeout, "hits": hits}
    load_before = os.getloadavg()[0]

    def run(coroutine: Any) -> Any:
        return asyncio.run(capnp.run(coroutine))

    with tempfile.TemporaryDirectory() as tmp:
        with server_for(Path(tmp) / "state", {}) as server:
            for phase in ("cold", "warm"):
                results[phase] = run(solve_all(server, corpus, manifest, args.timeout))
                print(_line(phase, results[phase]), flush=True)
            decided = [n for n, v in results["cold"]["verdicts"].items() if v in _DECIDED]
            for phase in ("cold", "warm"):
                times = results[phase]["times"]
                results[phase]["decided_seconds"] = sum(times[n] for n in decided)
            print(
                f"the {len(decided)} decided instances: {results['cold']['decided_seconds']:.2f} s"
                f" cold, {results['warm']['decided_seconds']:.2f} s warm",
                flush=True,
            )
            results["hit_sqlite"] = run(hit_latency(server, corpus, manifest, decided, hits))
            print("hit, sqlite:", _latency(results["hit_sqlite"]), flush=True)
        results["hit_redis"] = _redis_hits(Path(tmp), corpus, manifest, decided, hits, run)
        if results["hit_redis"]:
            print("hit, redis:", _latency(results["hit_redis"]), flush=True)
    results["load"] = [load_before, os.getloadavg()[0]]
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    report = args.out.parent / "report.md"
    if report.exists() and not args.smoke:
        cache_report.insert(report, cache_report.section(args.out.parent))
        print(f"updated {report}")


_DECIDED = ("proved", "refuted")


def _redis_hits(
    tmp: Path, corpus: Path, manifest: Manifest, decided: list[str], hits: int, run: Any
) -> dict[str, Any] | None:
    (tmp / "redis").mkdir()
    with (
        redis_server(tmp / "redis") as url,
        server_for(
            tmp / "state-redis", {"PROOFRACE_CACHE": "redis", "PROOFRACE_CACHE_URL": url}
        ) as server,
    ):
        # Fill the shared store: one race per decided instance.
        by_name = {i.name for i in manifest.instances if i.name in decided}
        subset = Manifest([i for i in manifest.instances if i.name in by_name])
        run(solve_all(server, corpus, subset, 60.0))
        result: dict[str, Any] = run(hit_latency(server, corpus, manifest, decided, hits))
        return result


def _line(phase: str, r: dict[str, Any]) -> str:
    return (
        f"{phase}: {r['seconds']:.1f} s, {r['provers_started']} provers started, "
        f"{r['decided']}/{r['instances']} decided, sources {r['sources']}"
    )


def _latency(r: dict[str, Any]) -> str:
    c, s = r["client_ms"], r["lookup_ms"]
    return (
        f"client solve→result p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms; "
        f"server lookup p50 {s['p50']:.3f} ms, p99 {s['p99']:.3f} ms"
    )


if __name__ == "__main__":
    main()
