"""docker-compose.yml driven with Debian's docker-compose (v1), as an operator runs it: one
project per test, on free loopback ports."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

import docker

from .nodes import IMAGE, PROMETHEUS_IMAGE, REPO


class Compose:
    def __init__(self, *files: str, env: dict[str, str] | None = None) -> None:
        self.project = f"proofrace-test-{uuid.uuid4().hex[:8]}"
        self.files = [str(REPO / "docker-compose.yml"), *(str(REPO / f) for f in files)]
        self.env = {
            **os.environ,
            "PROOFRACE_IMAGE": IMAGE,
            "PROOFRACE_PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
            # Port 0: Docker picks free loopback ports, so a running deployment is no obstacle.
            "PROOFRACE_BIND": "127.0.0.1",
            "PROOFRACE_RPC_PORT": "0",
            "PROOFRACE_METRICS_PORT": "0",
            "PROOFRACE_PROMETHEUS_PORT": "0",
            "PROOFRACE_WORKER_SECRET": "the compose test's worker credential",
            **(env or {}),
        }

    def __call__(self, *args: str, timeout: float = 120) -> str:
        command = ["docker-compose", *(a for f in self.files for a in ("-f", f))]
        done = subprocess.run(
            [*command, "-p", self.project, *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    def address(self, service: str, port: int) -> str:
        _, _, mapped = self("port", service, str(port)).strip().rpartition(":")
        return f"127.0.0.1:{mapped}"

    def containers(self, service: str) -> list[Any]:
        labels = [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}",
        ]
        found: list[Any] = docker.from_env().containers.list(all=True, filters={"label": labels})
        return found
