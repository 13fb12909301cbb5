#!/usr/bin/env bash
# The container side of proofrace: installs Docker if missing, starts dockerd if it is not
# running, builds the base image (offline, from Debian's archive) and the service images when
# their inputs changed, then runs the container tests (tests/containers) with the repo's venv.
#
# Usage: scripts/containers.sh [test] [PYTEST ARGS...]   build what is missing, then test
#        scripts/containers.sh build                     only build
# Environment:
#   PROOFRACE_BASE_IMAGE  base for the images; unset: build proofrace-base:bookworm here with
#                         debootstrap. With a registry, e.g. debian:bookworm-slim (pulled).
#   PROOFRACE_VENV        the virtualenv (default .venv), as in setup.sh.
# Prints the tags it built or reused; the tests get them as PROOFRACE_IMAGE and
# PROOFRACE_PROMETHEUS_IMAGE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${PROOFRACE_VENV:-$root/.venv}"
work="$root/build/containers"
action="test"
case "${1:-}" in
test | build) action="$1" && shift ;;
"" | -*) ;; # pytest options straight away
*)
  echo "usage: $0 [test|build] [pytest args...]" >&2
  exit 2
  ;;
esac
mkdir -p "$work"
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"
started=$SECONDS
step() { echo "containers: [$((SECONDS - started))s] $*"; }

# --- Docker engine --------------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [[ -z "${PROOFRACE_BASE_IMAGE:-}" ]] && ! command -v debootstrap >/dev/null 2>&1; then
  missing+=(debootstrap)
fi
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log=/var/log/proofrace-dockerd.log
  [[ -w /var/log ]] || log="$work/dockerd.log"
  # A daemon killed outright (a session ending, say) leaves its pid file behind, and a new one
  # refuses to start over it.
  pidfile=/var/run/docker.pid
  if [[ -f "$pidfile" ]]; then
    old="$(cat "$pidfile")"
    # Alive means a dockerd that is not a zombie.
    if [[ "$(cat "/proc/$old/comm" 2>/dev/null)" != dockerd ]] ||
      [[ "$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null)" == Z ]]; then
      $sudo rm -f "$pidfile"
    fi
  fi
  step "starting dockerd (log: $log)"
  # No systemd here: the daemon runs in the background and outlives this script, so later
  # runs reuse it and its image store.
  $sudo sh -c "nohup dockerd --storage-driver=overlay2 >>'$log' 2>&1 &"
  for _ in $(seq 600); do
    docker info >/dev/null 2>&1 && break
    if ! pgrep -x dockerd >/dev/null 2>&1; then
      echo "containers: dockerd exited; the end of its log:" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "containers: dockerd did not answer within 60 s:" >&2
    docker info 2>&1 | tail -n 5 >&2 || true
    tail -n 20 "$log" >&2
    exit 1
  fi
fi

# --- the virtualenv -------------------------------------------------------------------------
"$root/scripts/setup.sh"
py="$venv/bin/python"
# The container tests' own dependencies (testcontainers, PyYAML for the manifests).
if ! "$py" -c 'import testcontainers, yaml' 2>/dev/null; then
  step "installing testcontainers and PyYAML into $venv"
  "$venv/bin/pip" install -q "testcontainers>=4.8" "PyYAML>=6"
fi

# --- manifest checks ------------------------------------------------------------------------
# The schema validator and the policy scanner for the Kubernetes manifests, pinned, in a
# virtualenv of their own (the scanner brings many dependencies the project does not use), kept
# in the user's cache so that every checkout reuses it.
policy="${PROOFRACE_POLICY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/proofrace/policy}"
policy_pins="kubernetes-validate==1.37.0 checkov==3.3.30"
if [[ "$(cat "$policy/.pins" 2>/dev/null)" != "$policy_pins" ]]; then
  step "installing $policy_pins into $policy"
  rm -rf "$policy"
  python3 -m venv "$policy"
  # shellcheck disable=SC2086
  "$policy/bin/pip" install -q $policy_pins
  echo "$policy_pins" >"$policy/.pins"
fi
# Rendering the overlays: kubectl's built-in kustomize, else kustomize from the Go module proxy.
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  step "installing kustomize"
  GOBIN=/usr/local/bin go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
fi

# --- base image -----------------------------------------------------------------------------
base="${PROOFRACE_BASE_IMAGE:-}"
if [[ -z "$base" ]]; then
  base=proofrace-base:bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    step "building $base with debootstrap"
    $sudo "$root/docker/build-base.sh" "$base"
  fi
elif ! docker image inspect "$base" >/dev/null 2>&1; then
  step "pulling $base"
  docker pull -q "$base" >/dev/null
fi
base_id="$(docker image inspect -f '{{.Id}}' "$base")"

# --- inputs and their hash ------------------------------------------------------------------
# Everything the proofrace wheel is made of. Untracked files count too (a new module must
# reach the image before it is committed).
sources() {
  cd "$root"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -- pyproject.toml README.md server client/python schemas
  else
    find pyproject.toml README.md server client/python schemas -type f ! -path '*/__pycache__/*'
  fi | while read -r f; do [[ -f "$f" ]] && echo "$f"; done | LC_ALL=C sort
}
digest() { # files relative to $root on stdin -> one hash of their names and contents
  (cd "$root" && while read -r f; do
    echo "$f"
    sha256sum <"$f"
  done) | sha256sum | cut -c1-16
}

# The dependencies, pinned to what the venv runs (the versions the rest of the tests use).
pins="$(
  cd "$root" && "$py" - <<'EOF'
import importlib.metadata as metadata
import re
import tomllib

with open("pyproject.toml", "rb") as f:
    requirements = tomllib.load(f)["project"]["dependencies"]
for requirement in requirements:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    print(f"{name}=={metadata.version(name)}")
EOF
)"
wheels="$root/docker/wheels"
if [[ "$(cat "$wheels/deps/.pins" 2>/dev/null)" != "$pins" ]]; then
  step "downloading wheels: ${pins//$'\n'/ }"
  rm -rf "$wheels/deps" && mkdir -p "$wheels/deps"
  # Binary wheels for the image's Python (Debian bookworm: CPython 3.11.2, glibc 2.36). pip
  # does not widen a --platform to older manylinux tags by itself, so they are all listed.
  # It also reads environment markers with the Python running it, not the image's: what the
  # image's 3.11.2 needs beyond that (redis wants async-timeout below 3.11.3) is named here.
  platforms=()
  for glibc in 2_36 2_34 2_31 2_28 2_27 2_24 2_17; do
    platforms+=(--platform "manylinux_${glibc}_$(uname -m)")
  done
  # shellcheck disable=SC2086
  "$venv/bin/pip" download -q -d "$wheels/deps" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 "${platforms[@]}" $pins \
    "async-timeout>=4.0.3"
  echo "$pins" >"$wheels/deps/.pins"
fi

image_inputs="$(
  {
    sources
    (cd "$root" && ls docker/Dockerfile docker/entrypoint.sh docker/healthcheck.py)
  } | digest
)"
image_hash="$(printf '%s\n' "$image_inputs" "$base_id" "$pins" | sha256sum | cut -c1-16)"
image="proofrace:$image_hash"
prometheus_hash="$(
  {
    (cd "$root" && ls docker/prometheus/Dockerfile docker/prometheus/prometheus.yml) | digest
    echo "$base_id"
  } | sha256sum | cut -c1-16
)"
prometheus="proofrace-prometheus:$prometheus_hash"
# The shared verdict cache of docker-compose.cache.yml.
redis_hash="$({ (cd "$root" && ls docker/redis/Dockerfile) | digest; echo "$base_id"; } | sha256sum | cut -c1-16)"
redis="proofrace-redis:$redis_hash"

build() { # tag context [extra docker build args]
  local tag="$1" context="$2"
  shift 2
  # The classic builder: Debian's engine has no BuildKit client plugin to go with it.
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" -t "$tag" "$@" "$context" \
    >"$work/build.log" 2>&1 || {
    tail -n 30 "$work/build.log" >&2
    exit 1
  }
}

if docker image inspect "$image" >/dev/null 2>&1; then
  step "reusing $image"
else
  step "building the proofrace wheel"
  # From a clean copy of exactly the hashed files: setuptools' build/ folder in the checkout
  # could otherwise carry stale modules into the wheel.
  stage="$(mktemp -d "$work/stage.XXXXXX")"
  sources | (cd "$root" && xargs cp --parents -t "$stage")
  rm -rf "$wheels/app" && mkdir -p "$wheels/app"
  "$venv/bin/pip" wheel -q --no-deps -w "$wheels/app" "$stage" \
    >"$work/wheel.log" 2>&1 || {
    cat "$work/wheel.log" >&2
    rm -rf "$stage"
    exit 1
  }
  rm -rf "$stage"
  step "building $image on $base"
  build "$image" "$root/docker"
fi
docker tag "$image" proofrace:latest
# The release's version too: the tag deploy/k8s/base/kustomization.yaml pins.
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)"
docker tag "$image" "proofrace:$version"

if docker image inspect "$prometheus" >/dev/null 2>&1; then
  step "reusing $prometheus"
else
  step "building $prometheus on $base"
  build "$prometheus" "$root/docker/prometheus"
fi
docker tag "$prometheus" proofrace-prometheus:latest
if docker image inspect "$redis" >/dev/null 2>&1; then
  step "reusing $redis"
else
  step "building $redis on $base"
  build "$redis" "$root/docker/redis"
fi
docker tag "$redis" proofrace-redis:latest
# Earlier builds' tags go: their layers are mostly shared, but each keeps its own app layer.
for repo in proofrace proofrace-prometheus proofrace-redis; do
  docker image ls --format '{{.Repository}}:{{.Tag}}' "$repo" |
    grep -v -x -e "$image" -e "$prometheus" -e "$redis" -e "$repo:latest" \
      -e "proofrace:$version" |
    xargs -r docker rmi >/dev/null 2>&1 || true
done
step "images: $image (proofrace:latest), $prometheus (proofrace-prometheus:latest)"

[[ "$action" == build ]] && exit 0

# --- tests ----------------------------------------------------------------------------------
cd "$root"
step "pytest tests/containers"
PROOFRACE_IMAGE="$image" PROOFRACE_PROMETHEUS_IMAGE="$prometheus" PROOFRACE_REDIS_IMAGE="$redis" \
  PROOFRACE_POLICY_VENV="$policy" TESTCONTAINERS_RYUK_DISABLED=true \
  "$py" -m pytest -ra tests/containers "$@"
