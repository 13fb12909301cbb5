"""The deployment files agree with the image: the Kubernetes manifests (deploy/k8s) and
docker-compose.yml parse, name commands and flags the CLI accepts, use settings that exist,
and use the ports the image exposes for each command. The pods meet the restricted Pod
Security standard, and the policies around them (network, disruption, autoscaling) point at
the right pods. Needs no Docker engine; test_manifest_policy.py runs the schema validator and
the policy scanner on the rendered manifests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proofrace import __version__
from proofrace.cli.main import build_parser
from proofrace.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = REPO / "deploy" / "k8s" / "base"
HARDENED = REPO / "deploy" / "k8s" / "hardened"
SETTINGS = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
HEALTH_PATH = "/healthz"


def dockerfile_instructions() -> dict[str, list[str]]:
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def exposed_ports() -> set[int]:
    return {int(p) for rest in dockerfile_instructions()["EXPOSE"] for p in rest.split()}


def command_ports() -> dict[str, dict[str, int]]:
    """What the image's entrypoint listens on for each command: {"serve": {"rpc": 7340,
    "metrics": 7341}, "worker": {"metrics": 7343}}."""
    text = (DOCKER / "entrypoint.sh").read_text()
    ports: dict[str, dict[str, int]] = {}
    for command, body in re.findall(r"^(\w+)\)\n(.*?);;", text, re.S | re.M):
        found = dict(re.findall(r"PROOFRACE_(LISTEN|METRICS)-[^:}]*:(\d+)", body))
        ports[command] = {
            {"LISTEN": "rpc", "METRICS": "metrics"}[k]: int(v) for k, v in found.items()
        }
    return ports


def manifests(folder: Path = K8S) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def pod_templates() -> dict[str, dict[str, Any]]:
    return {
        name: document["spec"]["template"]
        for (kind, name), document in manifests().items()
        if kind == "Deployment"
    }


def check_command(args: list[str]) -> str:
    """The container's arguments are a proofrace command line the CLI accepts."""
    parsed = build_parser().parse_args(args)
    assert parsed.command in ("serve", "worker")
    return str(parsed.command)


def test_the_image_and_its_entrypoint_agree() -> None:
    instructions = dockerfile_instructions()
    assert instructions["ENTRYPOINT"] == [
        '["/usr/bin/tini", "--", "/usr/local/bin/proofrace-entrypoint"]'
    ]
    assert instructions["CMD"] == ['["serve"]']
    assert instructions["USER"][-1].split(":")[0] == "proofrace"
    assert instructions["HEALTHCHECK"]
    ports = command_ports()
    assert ports == {"serve": {"rpc": 7340, "metrics": 7341}, "worker": {"metrics": 7343}}
    assert exposed_ports() == {p for c in ports.values() for p in c.values()}
    for command in ports:
        check_command([command])


@pytest.mark.parametrize("name", ["proofrace-dispatcher", "proofrace-worker"])
def test_a_deployment_agrees_with_the_image(name: str) -> None:
    deployment = manifests()[("Deployment", name)]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    # Enough for a drain, which waits until every prover is reaped.
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"].split("/")[-1].split(":")[0] == "proofrace"
    # No `command`: it would replace the entrypoint, and tini with it.
    assert "command" not in container
    command = check_command(container["args"])
    assert command == name.removeprefix("proofrace-").replace("dispatcher", "serve")

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == command_ports()[command]
    assert set(ports.values()) <= exposed_ports()
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}
    assert liveness["tcpSocket"]["port"] in ports
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for variable in container.get("env", []):
        assert variable["name"] in SETTINGS, variable["name"]
    # The scrape annotation names the metrics port.
    annotations = spec["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    # /tmp is writable under a read-only root: each attempt's files go there.
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


def test_the_dispatcher_service_reaches_the_dispatcher_and_the_workers_dial_it() -> None:
    found = manifests()
    service = found[("Service", "proofrace-dispatcher")]
    dispatcher = found[("Deployment", "proofrace-dispatcher")]["spec"]["template"]
    assert service["spec"]["selector"].items() <= dispatcher["metadata"]["labels"].items()
    container_ports = {
        p["name"]: p["containerPort"] for p in dispatcher["spec"]["containers"][0]["ports"]
    }
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == set(container_ports) == {"rpc", "metrics"}
    for name, port in service_ports.items():
        assert port["targetPort"] in (name, container_ports[name])

    worker = found[("Deployment", "proofrace-worker")]["spec"]["template"]["spec"]["containers"][0]
    env = {v["name"]: v.get("value") for v in worker["env"]}
    host, port = env["PROOFRACE_DISPATCHER"].rsplit(":", 1)
    assert host == service["metadata"]["name"]
    assert int(port) == service_ports["rpc"]["port"]


def test_the_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    (image,) = kustomization["images"]
    assert image["name"] == "proofrace"
    # A fixed reference: this release's version, or a digest; never a moving tag.
    assert image.get("digest", "").startswith("sha256:") or image["newTag"] == __version__
    (namespace,) = [name for kind, name in manifests() if kind == "Namespace"]
    assert kustomization["namespace"] == namespace


# The restricted Pod Security standard (Kubernetes' pod-security admission), checked field by
# field: a namespace that enforces it admits these pods.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret", "name"}  # fmt: skip


@pytest.mark.parametrize("name", ["proofrace-dispatcher", "proofrace-worker"])
def test_a_pod_meets_the_restricted_standard(name: str) -> None:
    pod = pod_templates()[name]["spec"]
    pod_security = pod["securityContext"]
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert pod["automountServiceAccountToken"] is False
    for volume in pod["volumes"]:
        assert set(volume) <= ALLOWED_VOLUMES, volume
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert not security["capabilities"].get("add")
        assert not security.get("privileged")
        assert True in (security.get("runAsNonRoot"), pod_security.get("runAsNonRoot"))
        assert pod_security.get("runAsUser", 1) != 0 and security.get("runAsUser", 1) != 0
        seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}
        assert not any("hostPort" in port for port in container["ports"])
        # An image reference without a tag: the kustomization sets the pinned one.
        assert container["image"] == "proofrace"
        # Started only once /healthz answers; liveness and readiness wait for it.
        assert container["startupProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}


def test_the_namespace_enforces_restricted_and_no_token_is_mounted() -> None:
    found = manifests()
    ((_, name),) = [key for key in found if key[0] == "Namespace"]
    labels = found[("Namespace", name)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    accounts = {n: d for (k, n), d in found.items() if k == "ServiceAccount"}
    for template in pod_templates().values():
        account = accounts[template["spec"]["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False


def selects(selector: dict[str, Any], template: dict[str, Any]) -> bool:
    labels = template["metadata"]["labels"]
    return bool(selector["matchLabels"].items() <= labels.items())


def test_the_network_policy_admits_clients_to_the_dispatcher_and_only_it_to_workers() -> None:
    found = manifests()
    policies = [d["spec"] for (k, _), d in found.items() if k == "NetworkPolicy"]
    templates = pod_templates()
    # A default deny for the whole namespace.
    assert any(p["podSelector"] == {} and "ingress" not in p for p in policies)

    def ingress(name: str) -> list[dict[str, Any]]:
        return [
            rule
            for p in policies
            if p["podSelector"] and selects(p["podSelector"], templates[name])
            for rule in p.get("ingress", [])
        ]

    # The dispatcher's RPC port: from any source.
    assert any(
        "from" not in rule and {"port": "rpc", "protocol": "TCP"} in rule["ports"]
        for rule in ingress("proofrace-dispatcher")
    )
    # A worker: its RPC port from the dispatcher only, its metrics port from monitoring only.
    for rule in ingress("proofrace-worker"):
        assert rule["from"], rule
        for peer in rule["from"]:
            if "podSelector" in peer:
                assert selects(peer["podSelector"], templates["proofrace-dispatcher"])
            else:
                assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_workers_have_a_disruption_budget_an_autoscaler_and_spread_out() -> None:
    found = manifests()
    worker = pod_templates()["proofrace-worker"]
    (budget,) = [d for (k, _), d in found.items() if k == "PodDisruptionBudget"]
    assert selects(budget["spec"]["selector"], worker)
    assert budget["spec"]["maxUnavailable"] == 1
    (autoscaler,) = [d for (k, _), d in found.items() if k == "HorizontalPodAutoscaler"]
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"]["name"] == "proofrace-worker"
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    # Scaled on the proofrace metrics that say whether more slots are needed.
    names = {m.get("pods", m.get("object", {}))["metric"]["name"] for m in spec["metrics"]}
    assert names == {"proofrace_slot_utilization", "proofrace_attempts_waiting"}
    spread = worker["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    for constraint in spread:
        assert selects(constraint["labelSelector"], worker)


def test_the_hardened_overlay_mounts_what_its_settings_name() -> None:
    kustomization = yaml.safe_load((HARDENED / "kustomization.yaml").read_text())
    generated = {s["name"]: s for s in kustomization["secretGenerator"]}
    keys = {
        name: {entry.split("=", 1)[0] for entry in secret["files"]}
        for name, secret in generated.items()
    }
    for patch in kustomization["patches"]:
        document = yaml.safe_load((HARDENED / patch["path"]).read_text())
        pod = document["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v["secret"] for v in pod["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        for variable in container["env"]:
            assert variable["name"] in SETTINGS, variable["name"]
            if variable["value"].startswith("/"):
                folder, _, key = variable["value"].rpartition("/")
                secret = mounts[folder]
                assert key in keys[secret["secretName"]], variable
                # Readable by the pod's group (fsGroup 10001), by nobody else.
                assert secret["defaultMode"] == 0o440


def test_the_compose_file_agrees_with_the_image_and_prometheus() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"dispatcher", "worker", "prometheus"}
    ports = command_ports()
    for name in ("dispatcher", "worker"):
        service = services[name]
        assert "entrypoint" not in service
        command = check_command(service["command"])
        published = {int(p.rsplit(":", 1)[1]) for p in service.get("ports", [])}
        assert published <= set(ports[command].values())
        for variable in service["environment"]:
            assert variable in SETTINGS, variable
    # The worker count and CPU share come from variables, so that `up -d` keeps what the
    # operator set (PROOFRACE_WORKERS) instead of falling back to a number in the file.
    assert services["worker"]["scale"] == "${PROOFRACE_WORKERS:-2}"
    assert services["worker"]["cpus"] == "${PROOFRACE_WORKER_CPUS:-1}"
    assert services["worker"]["environment"]["PROOFRACE_SLOTS"] == "${PROOFRACE_WORKER_SLOTS:-0}"
    assert "ports" not in services["worker"]  # replicas would collide on a host port
    host, port = services["worker"]["environment"]["PROOFRACE_DISPATCHER"].rsplit(":", 1)
    assert host == "dispatcher" and int(port) == ports["serve"]["rpc"]

    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["dispatcher"]["static_configs"] == [
        {"targets": [f"dispatcher:{ports['serve']['metrics']}"]}
    ]
    (discovery,) = jobs["worker"]["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["port"] == ports["worker"]["metrics"]
