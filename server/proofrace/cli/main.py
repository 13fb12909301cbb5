"""`proofrace serve | worker | solve | provers`."""

from __future__ import annotations

import argparse
import sys

from proofrace import __version__
from proofrace.cli import cache as cache_cli
from proofrace.cli import connect

EXIT_CODES = """exit codes:
  0 decided (proved or refuted)   1 undecided (unknown, timeout)   2 an error verdict
  130 cancelled                   64 malformed address or flag     66 unreadable file
  68 unknown host                 69 nothing answers, or the connection was lost
  70 internal fault               76 TLS mismatch or untrusted certificate
  77 login required or refused"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proofrace",
        description="Race theorem provers on one problem; the first decisive answer wins.",
    )
    parser.add_argument("--version", action="version", version=f"proofrace {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--config", help="TOML settings file ([server] table)")
    serve.add_argument("--listen", action="append", help="host:port for Cap'n Proto (repeatable)")
    serve.add_argument(
        "--unix",
        help="listen on this Unix socket path, created 0600 (the default with no --listen)",
    )
    serve.add_argument("--metrics", help="host:port for /metrics and /healthz ('' for none)")
    serve.add_argument("--provers-file", help="TOML registry adding or replacing provers")
    serve.add_argument(
        "--local-slots", type=int, help="attempts run here at once (-1: no limit, 0: none)"
    )
    serve.add_argument(
        "--worker", action="append", dest="workers", help="host:port of a worker to dial"
    )
    serve.add_argument(
        "--worker-secret-file",
        help="the worker credential: opens the WorkerHub, and is presented "
        "to the workers this server dials",
    )
    serve.add_argument("--workers-ca", help="CA (PEM) of the workers it dials: dial with TLS")
    serve.add_argument("--log-format", choices=["auto", "json", "console"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    worker = commands.add_parser("worker", help="run attempts for a dispatcher")
    worker.add_argument("--config", help="TOML settings file ([server] table)")
    worker.add_argument("--dispatcher", help="host:port of the dispatcher to register with")
    worker.add_argument(
        "--listen", action="append", help="host:port to accept a dispatcher on (repeatable)"
    )
    worker.add_argument("--name", help="the name to register under (default: host name)")
    worker.add_argument("--slots", type=int, help="attempts at once (default: one per CPU)")
    worker.add_argument("--metrics", help="host:port for /metrics and /healthz ('' for none)")
    worker.add_argument("--provers-file", help="TOML registry adding or replacing provers")
    worker.add_argument("--credential-file", help="the worker credential for the dispatcher")
    worker.add_argument(
        "--worker-secret-file", help="the worker credential a dispatcher dialling in must present"
    )
    worker.add_argument("--dispatcher-ca", help="CA (PEM) of a TLS dispatcher: dial with TLS")
    worker.add_argument("--log-format", choices=["auto", "json", "console"])
    worker.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    solve = commands.add_parser(
        "solve",
        help="solve a problem file on a running service",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    solve.add_argument("file", help="problem file (SMT-LIB2, DIMACS or TPTP); - for stdin")
    connect.add_arguments(solve)
    solve.add_argument("--prover", action="append", default=[], help="repeatable; default: all")
    solve.add_argument("--strategy", default="firstWins", choices=["firstWins", "all", "quorum"])
    solve.add_argument("--quorum", type=int, default=2)
    solve.add_argument("--timeout", type=float, help="seconds (default: the server's)")
    solve.add_argument("--format", default="auto", choices=["auto", "smtlib2", "dimacs", "tptp"])
    solve.add_argument(
        "--confirm", action="store_true", help="a decisive answer must be certified or confirmed"
    )
    solve.add_argument("--goal-id", default="", help="your id for this goal, echoed in logs")
    solve.add_argument(
        "--cache",
        default="use",
        choices=["use", "certifiedOnly", "bypass", "refresh"],
        help="what the server's verdict cache may do (default: use)",
    )
    solve.add_argument(
        "--wait-for-capacity",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="while no worker runs a prover for it yet, wait up to this long (default: 0)",
    )
    solve.add_argument("--json", action="store_true", help="print the outcome as JSON")

    provers = commands.add_parser(
        "provers",
        help="list the provers a service knows",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connect.add_arguments(provers)

    cache = commands.add_parser("cache", help="inspect or invalidate the verdict cache")
    cache_cli.add_arguments(cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # never a traceback for the user; the one line says what
        from proofrace.cli.errors import EXIT_SOFTWARE

        text = (str(error).strip().splitlines() or [""])[0]
        print(f"proofrace {args.command}: internal error: {type(error).__name__}: {text}",
              file=sys.stderr)  # fmt: skip
        return EXIT_SOFTWARE


def _run(args: argparse.Namespace) -> int:
    if args.command in ("serve", "worker"):
        from proofrace.cli.serve import run_serve

        return run_serve(args)
    if args.command == "cache":
        return cache_cli.run_cache(args)
    if args.command == "solve":
        from proofrace.cli.solve import run_solve

        return run_solve(args)
    from proofrace.cli.provers import run_provers

    return run_provers(args)


if __name__ == "__main__":
    sys.exit(main())
