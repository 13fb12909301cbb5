"""The rendered Kubernetes manifests (plain and hardened) through a schema validator and a
policy scanner, both pinned to versions from PyPI and installed by scripts/containers.sh into
a virtualenv of their own:
- kubernetes-validate, strict (no field the schema lacks), for Kubernetes 1.28, 1.32 and 1.37;
- checkov's Kubernetes checks, all of them but the few deploy/k8s/checkov.yaml skips, each
  with its reason.
Rendering uses `kubectl kustomize` (or a `kustomize` binary). Runs with the container tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Where scripts/containers.sh installs the pinned checkers (shared by every checkout).
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
TOOLS = Path(os.environ.get("PROOFRACE_POLICY_VENV", CACHE / "proofrace" / "policy")) / "bin"
KUBERNETES_VERSIONS = ("1.28", "1.32", "1.37")


def tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: scripts/containers.sh installs it"
    return str(path)


def kustomize(folder: Path) -> str:
    if shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(folder)]
    else:
        assert shutil.which("kustomize"), "neither kubectl nor kustomize is installed"
        command = ["kustomize", "build", str(folder)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module", params=["base", "hardened"])
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One overlay rendered to a single file, as `kubectl apply -k` would send it."""
    work = tmp_path_factory.mktemp(request.param)
    shutil.copytree(DEPLOY / "k8s", work / "k8s")
    if request.param == "hardened":
        # The secrets the overlay reads, made the way docs/deploy.md says.
        subprocess.run(
            [str(DEPLOY / "make-secrets.sh"), str(work / "k8s/hardened/secrets")],
            check=True,
            capture_output=True,
        )
    output = work / f"{request.param}.yaml"
    output.write_text(kustomize(work / "k8s" / request.param))
    return output


def test_every_manifest_renders_into_the_namespace(rendered: Path) -> None:
    documents = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    kinds = {d["kind"] for d in documents}
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "ServiceAccount"} <= kinds  # fmt: skip
    if rendered.stem == "hardened":
        assert sum(d["kind"] == "Secret" for d in documents) == 4
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "proofrace", document["metadata"]
        for container in (
            document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest", container["image"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_schema_validator_accepts_every_manifest(rendered: Path, version: str) -> None:
    done = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--kubernetes-version", version,
         str(rendered)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INFO" in done.stdout and "ERROR" not in done.stdout, done.stdout


def test_the_policy_scanner_passes_every_check(rendered: Path) -> None:
    done = subprocess.run(
        [tool("checkov"), "--quiet", "--compact", "--framework", "kubernetes",
         "--config-file", str(DEPLOY / "k8s" / "checkov.yaml"), "--file", str(rendered)],
        capture_output=True, text=True, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
