#!/bin/sh
# Container defaults that differ between the two commands: listen on every interface, and the
# metrics port of each. PROOFRACE_* variables and flags still override them.
set -e
case "${1:-}" in
serve)
  export PROOFRACE_LISTEN="${PROOFRACE_LISTEN-0.0.0.0:7340}"
  export PROOFRACE_METRICS="${PROOFRACE_METRICS-0.0.0.0:7341}"
  ;;
worker)
  export PROOFRACE_METRICS="${PROOFRACE_METRICS-0.0.0.0:7343}"
  ;;
esac
exec proofrace "$@"
