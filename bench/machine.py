"""What the benchmark ran on: hardware, system, prover and library versions, and the load."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from proofrace.backends.registry import Registry

LIBRARIES = ("pycapnp", "pysmt", "z3-solver", "cvc5", "python-sat", "matplotlib")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _system() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _library(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _debian_package(name: str) -> str:
    """The prover's Debian package version, more telling than what some binaries print."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", name],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def describe() -> dict[str, Any]:
    registry = Registry.load()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "system": _system(),
        "python": platform.python_version(),
        "provers": {
            info.name: {
                "reports": info.version,
                "package": _debian_package(info.name),
                "available": info.available,
            }
            for info in registry.info()
        },
        "libraries": {name: _library(name) for name in LIBRARIES},
        "load_at_start": load(),
    }
