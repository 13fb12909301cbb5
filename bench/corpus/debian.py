"""Debian source packages through a private apt configuration.

The system's apt configuration is left alone: the `deb-src` lines are derived from the
system's own `deb` entries for its release and written, with their own lists and caches, under
a directory of ours, which every apt-get call here is pointed at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

APT_SOURCES = Path("/etc/apt/sources.list")
APT_PARTS = Path("/etc/apt/sources.list.d")


class SourceUnavailable(RuntimeError):
    """apt could not provide the source package (no network, no deb-src, not Debian)."""


@dataclass(frozen=True)
class Entry:
    uri: str
    suite: str
    components: tuple[str, ...]
    signed_by: str = ""


def release_codename() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise SourceUnavailable("no VERSION_CODENAME in /etc/os-release")


def system_entries() -> list[Entry]:
    """The system's binary (`deb`) entries, from both one-line and deb822 files."""
    entries: list[Entry] = []
    one_line = [APT_SOURCES, *sorted(APT_PARTS.glob("*.list"))]
    for path in one_line:
        if path.is_file():
            entries += _one_line_entries(path.read_text())
    for path in sorted(APT_PARTS.glob("*.sources")):
        entries += _deb822_entries(path.read_text())
    return entries


def _one_line_entries(text: str) -> list[Entry]:
    found = []
    for line in text.splitlines():
        # "deb [options] URI SUITE COMPONENT..."; the options do not matter for deb-src
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb":
            found.append(Entry(words[1], words[2], tuple(words[3:])))
    return found


def _deb822_entries(text: str) -> list[Entry]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                found.append(
                    Entry(
                        uri,
                        suite,
                        tuple(fields.get("components", "").split()),
                        fields.get("signed-by", ""),
                    )
                )
    return found


class PrivateApt:
    """apt-get with `deb-src` lines of its own, in `root`; `update()` once, then `source()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._parts = root / "sources.list.d"
        self._options = [
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={self._parts}",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            # Downloads land in directories of ours, which the unprivileged _apt user may
            # not be able to write.
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def update(self) -> None:
        if shutil.which("apt-get") is None or shutil.which("dpkg-source") is None:
            raise SourceUnavailable("needs apt-get and dpkg-source (Debian package dpkg-dev)")
        codename = release_codename()
        wanted = [
            e
            for e in system_entries()
            if e.suite in (codename, f"{codename}-updates") and "main" in e.components
        ]
        if not wanted:
            raise SourceUnavailable(f"no apt entry for {codename} main to derive deb-src from")
        for folder in (self._parts, self.root / "lists" / "partial", self.root / "cache"):
            folder.mkdir(parents=True, exist_ok=True)
        stanzas = []
        for entry in wanted:
            stanza = [
                "Types: deb-src",
                f"URIs: {entry.uri}",
                f"Suites: {entry.suite}",
                "Components: main",
            ]
            if entry.signed_by:
                stanza.append(f"Signed-By: {entry.signed_by}")
            stanzas.append("\n".join(stanza))
        (self._parts / "proofrace-src.sources").write_text("\n\n".join(stanzas) + "\n")
        self._apt("update")

    def source(self, package: str, into: Path) -> Path:
        """Download and unpack `package`'s source into `into`; returns the unpacked tree."""
        into.mkdir(parents=True, exist_ok=True)
        self._apt("source", package, cwd=into)
        trees = [p for p in into.iterdir() if p.is_dir() and p.name.startswith(f"{package}-")]
        if len(trees) != 1:
            raise SourceUnavailable(f"expected one unpacked tree for {package}, found {trees}")
        return trees[0]

    def _apt(self, *args: str, cwd: Path | None = None) -> None:
        done = subprocess.run(
            ["apt-get", "-q", *self._options, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SourceUnavailable(
                f"apt-get {' '.join(args)} failed: {done.stderr.strip()[-2000:]}"
            )


def source_version(tree: Path) -> str:
    """`eprover-2.6+ds` -> the .dsc beside it names the Debian revision: `2.6+ds-3`."""
    package = tree.name.rsplit("-", 1)[0]
    dscs = sorted(tree.parent.glob(f"{package}_*.dsc"))
    return dscs[0].stem.split("_", 1)[1] if dscs else tree.name.rsplit("-", 1)[1]
