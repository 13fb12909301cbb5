#!/usr/bin/env bash
# Installs everything proofrace needs on Debian 12, reusing whatever is already there:
# the provers and the Cap'n Proto tools (apt), and a Python virtualenv with the package.
# Usage: scripts/setup.sh [--clients]   (--clients: also the toolchains of the C++/Go/Rust clients)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PROOFRACE_VENV:-$root/.venv}"

# command -> Debian package
packages=(z3:z3 cvc5:cvc5 cvc4:cvc4 boolector:boolector cadical:cadical minisat:minisat
  cryptominisat5:cryptominisat picosat:picosat eprover:eprover SPASS:spass capnp:capnproto
  redis-server:redis-server  # redis-server: the shared verdict cache's tests
  cc:gcc musl-gcc:musl-tools)  # cc, musl-gcc: the prover sandbox's launcher
if [[ "${1:-}" == "--clients" ]]; then
  packages+=(pkg-config:pkg-config g++:g++ make:make)
fi
missing=()
for entry in "${packages[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if [[ "${1:-}" == "--clients" ]] && ! pkg-config --exists capnp-rpc 2>/dev/null; then
  missing+=(libcapnp-dev)
fi
if ((${#missing[@]})); then
  sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "setup: creating $venv"
  python3 -m venv "$venv"
fi
# Reinstall only when the dependencies changed (or the checkout moved).
stamp="$venv/.proofrace-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $root"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing the proofrace package into $venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e "$root[dev,bench]"
  echo "$want" >"$stamp"
fi

# The prover sandbox's launcher, beside the venv's python (where the server looks first);
# backends/jail/build.sh says how it is built, and why. Rebuilt when its source, its build
# script or the C library it can use changed.
jail_dir="$root/server/proofrace/backends/jail"
jail_stamp="$venv/bin/.proofrace-jail.build"
jail_want="$(cat "$jail_dir/launcher.c" "$jail_dir/build.sh" | sha256sum | cut -d' ' -f1) $(command -v musl-gcc || echo glibc)"
if [[ ! -x "$venv/bin/proofrace-jail" || "$(cat "$jail_stamp" 2>/dev/null)" != "$jail_want" ]]; then
  libc="$(sh "$jail_dir/build.sh" "$venv/bin/proofrace-jail")"
  echo "setup: built proofrace-jail (static, $libc)"
  echo "$jail_want" >"$jail_stamp"
fi
