"""Assembling the corpus: each source into the cache directory, then the manifest."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from bench.corpus import cadical, families, tptp
from bench.corpus.debian import PrivateApt, SourceUnavailable, source_version
from bench.corpus.manifest import Instance, Manifest

SOURCES = ("tptp-e", "cadical-tests", "genhard")


def assemble(
    directory: Path,
    sources: Iterable[str] = SOURCES,
    family_sizes: Mapping[str, Sequence[int]] = families.FULL_SIZES,
    say: Callable[[str], None] = print,
) -> Manifest:
    """Writes every instance and `manifest.json` under `directory`. A source that cannot be
    had (no apt, no network) is skipped with a message; the others are still assembled."""
    wanted = list(sources)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = Manifest()
    debian = [s for s in wanted if s in ("tptp-e", "cadical-tests")]
    if debian:
        _from_debian(directory, debian, manifest, say)
    if "genhard" in wanted:
        manifest.instances += families.collect(directory, family_sizes)
        manifest.sources["genhard"] = "generated with python-sat's pysat.examples.genhard"
    manifest.save(directory)
    say(f"corpus: {len(manifest.instances)} instances in {directory}")
    return manifest


def _from_debian(
    directory: Path, wanted: list[str], manifest: Manifest, say: Callable[[str], None]
) -> None:
    packages = {"tptp-e": ("eprover", tptp.collect), "cadical-tests": ("cadical", cadical.collect)}
    with tempfile.TemporaryDirectory(prefix="proofrace-corpus-") as scratch:
        apt = PrivateApt(Path(scratch) / "apt")
        try:
            apt.update()
        except SourceUnavailable as why:
            say(f"corpus: skipping {', '.join(wanted)}: {why}")
            return
        for source in wanted:
            package, collect = packages[source]
            try:
                tree = apt.source(package, Path(scratch) / package)
            except SourceUnavailable as why:
                say(f"corpus: skipping {source}: {why}")
                continue
            version = source_version(tree)
            stale = directory / source
            if stale.exists():
                shutil.rmtree(stale)
            found: list[Instance] = collect(tree, version, directory, say)
            manifest.instances += found
            manifest.sources[source] = f"Debian source package {package} {version}"
            say(f"corpus: {source}: {len(found)} instances from {package} {version}")
