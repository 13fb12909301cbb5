"""Assemble the benchmark corpus into a cache directory.

Usage: python -m bench.corpus [--dir DIR] [--source NAME]... [--tiny]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.corpus import families
from bench.corpus.build import SOURCES, assemble
from bench.corpus.manifest import default_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help=f"default: {default_cache()}")
    parser.add_argument("--source", action="append", choices=SOURCES, help="default: all")
    parser.add_argument(
        "--tiny", action="store_true", help="generated families only, at tiny sizes"
    )
    args = parser.parse_args()
    directory = args.dir or default_cache()
    if args.tiny:
        assemble(directory, ["genhard"], families.TINY_SIZES)
    else:
        assemble(directory, args.source or SOURCES)


if __name__ == "__main__":
    main()
