"""The hardened Kubernetes manifests, run as the kubelet would run their pods, on Docker: no
cluster is at hand, so each rendered Deployment's pod becomes a container with what the pod
spec asks for and a restricted namespace allows:
- the image, `args` (no `command`), and `env`, `fieldRef: metadata.name` and
  `secretKeyRef` included;
- `runAsUser`/`runAsGroup`, `fsGroup` as a supplementary group, a read-only root filesystem,
  every capability dropped, no privilege escalation, Docker's default seccomp profile;
- each `emptyDir` as a tmpfs of its `sizeLimit`; each Secret volume as its files, with the
  volume's `defaultMode` and group `fsGroup`, mounted read-only;
- the Service's name as the dispatcher's network alias.
Then workers register over TLS with a login, and a client solves through them: the settings,
paths, file modes and security context of the manifests work together."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import docker
from proofrace.client import Verdict

from .nodes import IMAGE, REPO, RPC_PORT, follow_logs, solve_hardened
from .test_manifest_policy import kustomize

EASY = (REPO / "samples" / "distinct.smt2").read_text()


def rendered_hardened(work: Path) -> tuple[list[dict[str, Any]], Path]:
    shutil.copytree(REPO / "deploy" / "k8s", work / "k8s")
    secrets = work / "k8s" / "hardened" / "secrets"
    subprocess.run([str(REPO / "deploy/make-secrets.sh"), str(secrets)], check=True,
                   capture_output=True)  # fmt: skip
    documents = [d for d in yaml.safe_load_all(kustomize(work / "k8s" / "hardened")) if d]
    return documents, secrets


def secret_files(secret: dict[str, Any], mode: int, group: int, folder: Path) -> Path:
    """A Secret volume as the kubelet lays it out: one file per key."""
    folder.mkdir(parents=True)
    for key, value in secret["data"].items():
        path = folder / key
        path.write_bytes(base64.b64decode(value))
        path.chmod(mode)
        shutil.chown(path, group=group)
    return folder


class PodRunner:
    def __init__(self, documents: list[dict[str, Any]], work: Path) -> None:
        self.engine = docker.from_env()
        self.secrets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Secret"}
        self.work = work
        self.network = self.engine.networks.create(f"proofrace-pods-{uuid.uuid4().hex[:8]}")
        self.containers: list[Any] = []

    def start(self, deployment: dict[str, Any], alias: str | None, publish: bool) -> Any:
        pod = deployment["spec"]["template"]["spec"]
        (spec,) = pod["containers"]
        name = f"{deployment['metadata']['name']}-{uuid.uuid4().hex[:5]}"
        security, pod_security = spec["securityContext"], pod["securityContext"]
        assert spec["image"].rpartition(":")[0] == "proofrace"  # the pinned tag is the release's
        env = {}
        for variable in spec.get("env", []):
            source = variable.get("valueFrom")
            if source and "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                data = self.secrets[ref["name"]]["data"][ref["key"]]
                env[variable["name"]] = base64.b64decode(data).decode()
            elif source:
                assert source == {"fieldRef": {"fieldPath": "metadata.name"}}
                env[variable["name"]] = name
            else:
                env[variable["name"]] = variable["value"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        binds: dict[str, dict[str, str]] = {}
        tmpfs: dict[str, str] = {}
        for mount in spec["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                size = volume["emptyDir"]["sizeLimit"].replace("Gi", "g").replace("Mi", "m")
                # Writable by the pod's group, as an emptyDir with fsGroup is.
                tmpfs[mount["mountPath"]] = f"size={size},mode=1777"
            else:
                secret = volume["secret"]
                files = secret_files(
                    self.secrets[secret["secretName"]], secret["defaultMode"],
                    pod_security["fsGroup"], self.work / name / mount["name"],
                )  # fmt: skip
                binds[str(files)] = {"bind": mount["mountPath"], "mode": "ro"}
        container = self.engine.containers.create(
            IMAGE,
            command=spec["args"],
            name=name,
            environment=env,
            user=f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}",
            group_add=[str(pod_security["fsGroup"])],
            read_only=security["readOnlyRootFilesystem"],
            cap_drop=security["capabilities"]["drop"],
            security_opt=["no-new-privileges"] if not security["allowPrivilegeEscalation"] else [],
            tmpfs=tmpfs,
            volumes=binds,
            network=self.network.name,
            ports={f"{RPC_PORT}/tcp": ("127.0.0.1", None)} if publish else {},
        )
        self.containers.append(container)
        if alias:
            self.network.disconnect(container)
            self.network.connect(container, aliases=[alias])
        container.start()
        return container

    def close(self) -> None:
        for container in reversed(self.containers):
            try:
                container.stop(timeout=30)
            finally:
                container.remove(force=True)
        self.network.remove()


@pytest.fixture
def pods(tmp_path: Path):
    documents, secrets = rendered_hardened(tmp_path)
    runner = PodRunner(documents, tmp_path / "volumes")
    try:
        yield runner, documents, secrets
    finally:
        runner.close()


def test_the_hardened_pods_serve_a_race_over_tls_with_a_login(pods, run) -> None:
    runner, documents, secrets = pods
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    (service,) = [d for d in documents if d["kind"] == "Service"]
    dispatcher = runner.start(
        deployments["proofrace-dispatcher"], alias=service["metadata"]["name"], publish=True
    )
    log, stream = follow_logs(dispatcher, "dispatcher")
    ready = log.wait_for(lambda e: e["event"] == "server.ready", 1, 60)[0]
    assert (ready["tls"], ready["login"], ready["insecure_tcp"]) == (True, True, False)
    workers = [runner.start(deployments["proofrace-worker"], None, False) for _ in range(2)]
    registered = log.wait_for(lambda e: e["event"] == "worker.registered", 2, 60)
    # Each worker registered under its pod's name (the fieldRef).
    assert {e["name"] for e in registered} == {w.name for w in workers}
    dispatcher.reload()
    address = f"127.0.0.1:{loopback_port_of(dispatcher)}"
    outcome = run(solve_hardened(address, secrets, EASY))
    assert outcome.verdict is Verdict.PROVED
    assert {a.worker for a in outcome.attempts} == {w.name for w in workers}
    # Nothing in the pods runs as root, and the root filesystem stays read-only.
    for container in [dispatcher, *workers]:
        top = container.top(ps_args="-o pid,uid,comm")
        assert {row[1] for row in top["Processes"]} == {"10001"}
        assert container.exec_run(["touch", "/var/lib/proofrace/x"]).exit_code != 0
    stream.close()


def loopback_port_of(container: Any) -> int:
    return int(container.attrs["NetworkSettings"]["Ports"][f"{RPC_PORT}/tcp"][0]["HostPort"])
