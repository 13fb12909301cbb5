"""The declarative prover registry: argv, formats and verdict rules, loaded from TOML."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from proofrace.backends.verdicts import Finding, Rule
from proofrace.core.model import Format, ProverInfo

INPUT_PLACEHOLDER = "{input}"
# Files a prover may be told to write its certificate to, in its attempt's directory.
MODEL_FILE = "model.out"
PROOF_FILE = "proof.drat"
_MODEL_SOURCES = ("", "stdout", "file")
_PROOF_KINDS = ("", "drat")
_VERSION_TIMEOUT_S = 5.0


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the prover and the field."""


@dataclass(frozen=True)
class ProverSpec:
    name: str
    command: tuple[str, ...]
    formats: frozenset[Format]
    rules: tuple[Rule, ...]
    version_command: tuple[str, ...] = ()
    version_pattern: str = ""
    default: bool = True
    engine: str = ""  # the solver behind it when several entries run one
    model: str = ""  # where its model is: "stdout", "file" (the {model} file), "" (none)
    proof: str = ""  # the proof it writes to the {proof} file: "drat", or "" (none)
    check: tuple[str, ...] = ()  # argv of the checker of its certificates
    handles: frozenset[str] | None = None  # problem features it reads; None: all
    # How a preempted attempt is stopped: SIGKILL at once unless the entry asks for SIGTERM
    # (`stop = "term"`), then SIGKILL after `grace_s` (the server's grace period if unset).
    stop_signal: int = signal.SIGKILL
    grace_s: float | None = None

    def argv(self, input_name: str) -> list[str]:
        return [
            part.replace(INPUT_PLACEHOLDER, input_name)
            .replace("{model}", MODEL_FILE)
            .replace("{proof}", PROOF_FILE)
            for part in self.command
        ]

    @property
    def executable(self) -> str:
        return self.command[0]


@dataclass
class Registry:
    specs: dict[str, ProverSpec]
    _info: dict[str, ProverInfo] = field(default_factory=dict)

    @classmethod
    def load(cls, extra_files: Iterable[Path] = ()) -> Registry:
        """The built-in registry, extended (or overridden, table by table) by `extra_files`."""
        builtin = resources.files("proofrace.backends").joinpath("provers.toml").read_text()
        specs = parse(tomllib.loads(builtin), origin="built-in registry")
        for path in extra_files:
            specs.update(parse(tomllib.loads(path.read_text()), origin=str(path)))
        return cls(specs)

    def probe(self) -> None:
        """Find which provers are installed, and their versions (once, at start-up)."""
        self._info = {name: _probe(spec) for name, spec in self.specs.items()}

    def info(self) -> list[ProverInfo]:
        if not self._info:
            self.probe()
        return [self._info[name] for name in sorted(self._info)]


def parse(document: Mapping[str, Any], *, origin: str) -> dict[str, ProverSpec]:
    return {name: _parse_one(name, table, origin) for name, table in document.items()}


def _parse_one(name: str, table: Any, origin: str) -> ProverSpec:
    where = f"{origin}: prover {name!r}"
    if not isinstance(table, dict):
        raise RegistryError(f"{where}: expected a table")
    command = table.get("command")
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        raise RegistryError(f"{where}: 'command' must be a non-empty list of strings")
    if not any(INPUT_PLACEHOLDER in part for part in command):
        raise RegistryError(f"{where}: 'command' must contain {INPUT_PLACEHOLDER}")
    try:
        formats = frozenset(Format(f) for f in table.get("formats", []))
    except ValueError as e:
        raise RegistryError(f"{where}: {e}") from None
    if not formats or Format.AUTO in formats:
        raise RegistryError(f"{where}: 'formats' must list smtlib2, dimacs or tptp")
    rules = []
    for entry in table.get("rules", []):
        if not (isinstance(entry, list) and len(entry) == 2):
            raise RegistryError(f"{where}: each rule is [regex, finding]")
        pattern, finding = entry
        try:
            rules.append(Rule(re.compile(pattern), Finding(finding)))
        except (re.error, ValueError) as e:
            raise RegistryError(f"{where}: rule {entry!r}: {e}") from None
    if not any(rule.finding.is_answer for rule in rules):
        raise RegistryError(f"{where}: 'rules' must recognise at least one answer")
    model = str(table.get("model", ""))
    proof = str(table.get("proof", ""))
    if model not in _MODEL_SOURCES or proof not in _PROOF_KINDS:
        raise RegistryError(f"{where}: 'model' is stdout or file, 'proof' is drat")
    check = table.get("check", [])
    if not (isinstance(check, list) and all(isinstance(c, str) for c in check)):
        raise RegistryError(f"{where}: 'check' must be a list of strings")
    handles = table.get("handles")
    if handles is not None and not (
        isinstance(handles, list) and all(isinstance(h, str) for h in handles)
    ):
        raise RegistryError(f"{where}: 'handles' must be a list of feature names")
    stop = table.get("stop", "kill")
    if stop not in _STOP_SIGNALS:
        raise RegistryError(f'{where}: \'stop\' must be "kill" or "term"')
    grace = table.get("grace_s")
    if grace is not None and (not isinstance(grace, int | float) or grace < 0):
        raise RegistryError(f"{where}: 'grace_s' must be a number of seconds, 0 or more")
    return ProverSpec(
        name=name,
        command=tuple(command),
        formats=formats,
        rules=tuple(rules),
        version_command=tuple(table.get("version", ())),
        version_pattern=str(table.get("version_pattern", "")),
        default=bool(table.get("default", True)),
        engine=str(table.get("engine", "")),
        model=model,
        proof=proof,
        check=tuple(check),
        handles=frozenset(handles) if handles is not None else None,
        stop_signal=_STOP_SIGNALS[stop],
        grace_s=float(grace) if grace is not None else None,
    )


_STOP_SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def _probe(spec: ProverSpec) -> ProverInfo:
    formats = tuple(sorted(spec.formats, key=lambda f: f.value))
    installed = shutil.which(spec.executable) is not None
    return ProverInfo(
        spec.name,
        _version(spec) if installed else "",
        formats,
        available=installed,
        default=spec.default,
        engine=spec.engine,
        handles=spec.handles,
    )


def _version(spec: ProverSpec) -> str:
    if not spec.version_command:
        return ""
    try:
        done = subprocess.run(
            spec.version_command,
            capture_output=True,
            timeout=_VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (done.stdout + done.stderr).decode(errors="replace")
    if spec.version_pattern:
        match = re.search(spec.version_pattern, text, re.MULTILINE)
        return match.group(1) if match else ""
    return text.strip().splitlines()[0] if text.strip() else ""
