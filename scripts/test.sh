#!/usr/bin/env bash
# Sets up (see setup.sh), then lints, type-checks, builds the container images (Docker engine
# included: see containers.sh), and runs every test against real provers and real containers.
# Extra arguments go to pytest, e.g. scripts/test.sh -k cancel
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PROOFRACE_VENV:-$root/.venv}"
"$root/scripts/setup.sh" --clients
cd "$root"
echo "== ruff"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
echo "== mypy"
PYTHON="$venv/bin/python" "$root/scripts/typecheck.sh"
echo "== images"
"$root/scripts/containers.sh" build
echo "== pytest"
# tests/containers is named so that its engine tests run too (a bare run leaves them out).
TESTCONTAINERS_RYUK_DISABLED=true exec "$venv/bin/python" -m pytest -ra tests tests/containers "$@"
