"""The corpus manifest: one entry per instance, with where it came from and what it should say."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST = "manifest.json"


def default_cache() -> Path:
    """`$PROOFRACE_CORPUS`, else `$XDG_CACHE_HOME/proofrace/corpus` (~/.cache by default)."""
    if explicit := os.environ.get("PROOFRACE_CORPUS"):
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "proofrace" / "corpus"


@dataclass(frozen=True)
class Instance:
    name: str  # unique, "<source>/<stem>"
    path: str  # relative to the corpus directory
    format: str  # smtlib2 | dimacs | tptp
    source: str  # which collection: tptp-e, cadical-tests, genhard
    family: str  # e.g. the TPTP domain, or pigeonhole
    origin: str  # where the text comes from, precisely enough to find it again
    expected: str | None = None  # proved | refuted | None when not known
    rating: float | None = None  # TPTP difficulty rating (latest), where known
    notes: str = ""


@dataclass
class Manifest:
    instances: list[Instance] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # source -> how it was obtained

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST
        document = {
            "sources": self.sources,
            "instances": [asdict(i) for i in sorted(self.instances, key=lambda i: i.name)],
        }
        path.write_text(json.dumps(document, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        document = json.loads((directory / MANIFEST).read_text())
        return cls(
            instances=[Instance(**entry) for entry in document["instances"]],
            sources=dict(document.get("sources", {})),
        )
