"""Container tests: the proofrace images on a real Docker engine.

They need a running engine and the images that scripts/containers.sh builds, so they run when
named on the command line (`pytest tests/containers`, which scripts/containers.sh does), and a
plain `pytest` over the whole suite leaves them out. test_manifests.py needs no engine and is
always collected; test_manifest_policy.py needs no engine but the checkers that
scripts/containers.sh installs. Docker's and testcontainers' modules are imported only by
the engine tests, so that the rest of the suite collects without them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .nodes import Cluster, Node

HERE = Path(__file__).resolve().parent
# Always collected: it needs nothing beyond the package and PyYAML.
ALWAYS = {"test_manifests.py"}
# Need no engine either, but tools that scripts/containers.sh installs.
NEEDS_NO_ENGINE = {*ALWAYS, "test_manifest_policy.py"}


def _named(config: pytest.Config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    name = collection_path.name
    if name.startswith("test_") and name.endswith(".py") and name not in ALWAYS:
        return None if _named(config) else True
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    nodes = sys.modules.get(f"{__package__}.nodes")
    if report.failed and nodes is not None:
        for running in nodes.ACTIVE:
            report.sections.append(("containers", running.describe()))
    return report


@pytest.fixture(scope="session", autouse=True)
def _engine_and_images(request: pytest.FixtureRequest) -> None:
    if all(item.path.name in NEEDS_NO_ENGINE for item in request.session.items):
        return
    # Ryuk (testcontainers' reaper) is an image from a registry; teardown here is explicit.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    import docker

    from .nodes import IMAGE, PROMETHEUS_IMAGE

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker engine: {error} (scripts/containers.sh starts one)")
    for image in (IMAGE, PROMETHEUS_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"image {image} is missing: run scripts/containers.sh build")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Cluster, Node, list[Node]]]:
    """A dispatcher that runs nothing itself and two workers (default slots), shared by a
    module whose tests leave them running."""
    from .nodes import cluster

    with cluster() as running:
        dispatcher = running.dispatcher(env={"PROOFRACE_LOCAL_SLOTS": "0"})
        workers = [running.worker(f"w{i}") for i in (1, 2)]
        dispatcher.wait_for("worker.registered", 2)
        yield running, dispatcher, workers
