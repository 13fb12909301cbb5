#!/usr/bin/env bash
# Sets up, starts the service on its built-in defaults, solves a bundled sample through it, and
# keeps serving until Ctrl-C (which stops every prover and exits cleanly).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PROOFRACE_VENV:-$root/.venv}"
"$root/scripts/setup.sh"
proofrace="$venv/bin/proofrace"

"$proofrace" serve --log-format console &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' EXIT INT TERM
# Wait (at most 30 s) until the service answers its health check.
for _ in $(seq 300); do
  if python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:7341/healthz", timeout=1)' 2>/dev/null; then
    break
  fi
  kill -0 $server 2>/dev/null || { echo "demo: the server did not start" >&2; exit 1; }
  sleep 0.1
done

echo
echo "== proofrace provers"
"$proofrace" provers
echo
echo "== proofrace solve samples/distinct.smt2"
"$proofrace" solve "$root/samples/distinct.smt2" || true
echo
echo "== proofrace solve samples/socrates.p --strategy all"
"$proofrace" solve "$root/samples/socrates.p" --strategy all || true
echo
echo "The service is listening on its local socket (metrics: http://127.0.0.1:7341/metrics)."
echo "Try: $proofrace solve $root/samples/pigeonhole-12.cnf   (then Ctrl-C to cancel it)"
echo "Ctrl-C here stops the service."
wait $server
