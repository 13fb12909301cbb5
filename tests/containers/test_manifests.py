"""The deployment files agree with the image: the Kubernetes manifests (deploy/k8s) and
docker-compose.yml parse, name commands and flags the CLI accepts, use settings that exist,
and use the ports the image exposes for each command. Needs no Docker engine."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proofrace.cli.main import build_parser
from proofrace.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = REPO / "deploy" / "k8s"
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


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and "metadata" in document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


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


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert [i["name"] for i in kustomization["images"]] == ["proofrace"]


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
    assert services["worker"]["scale"] == 2
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
