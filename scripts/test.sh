#!/usr/bin/env bash
# Sets up (see setup.sh), then lints, type-checks and runs every test against real provers.
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
echo "== pytest"
exec "$venv/bin/python" -m pytest -ra "$@"
