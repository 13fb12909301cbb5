#!/usr/bin/env bash
# mypy over the `proofrace` package as it is installed, and over the benchmarks. The package is
# assembled from several folders (server/, client/python, schemas/), so mypy gets a link tree
# with the installed shape.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$root/build/typecheck"
python="$(command -v "${PYTHON:-python}")"  # resolved before the cd below
[[ "$python" == /* ]] || python="$PWD/$python"
rm -rf "$tree" && mkdir -p "$tree/proofrace"
for entry in "$root"/server/proofrace/*; do ln -s "$entry" "$tree/proofrace/"; done
ln -s "$root/client/python" "$tree/proofrace/client"
ln -s "$root/schemas" "$tree/proofrace/schemas"
ln -s "$root/bench" "$tree/bench"
ln -s "$root/tests" "$tree/tests"  # bench/cross_host.py drives the container tests' nodes
cd "$tree"
MYPYPATH="$tree" exec "$python" -m mypy --config-file "$root/pyproject.toml" \
  -p proofrace -p bench
