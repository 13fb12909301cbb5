"""Confining prover processes: the command line of `proofrace-jail`, the launcher that sets an
attempt's rlimits, no_new_privs, a Landlock ruleset and a seccomp filter, then execs the prover.

What a prover may read: the system's shared directories, the installation its executable came
from, absolute paths on its command line (a script, say), and the operator's `sandbox_paths`.
What it may write: its attempt directory (and the operator's `sandbox_writable`, empty by
default). It opens no socket, binds or connects no TCP port, and signals nothing outside its
own attempt. The launcher is C (launcher.c beside this module), built by scripts/setup.sh and
the container build, and found on PATH or beside the Python that runs the server.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from proofrace.backends.spawn import CWD_OPTION, Limits

LAUNCHER = "proofrace-jail"
# Read and execute: libraries, interpreters, the dynamic loader's cache, locales, time zones.
SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)
WRITABLE_DEVICES = ("/dev/null",)
# Landlock's first ABI covers files; 4 adds TCP, 6 signals and abstract Unix sockets.
FULL_ABI = 6


class SandboxError(OSError):
    """The sandbox was asked for but cannot be had: say how to get it, or to turn it off."""


@dataclass(frozen=True)
class _Program:
    path: str  # as found on PATH: the name the prover is run under
    home: tuple[str, ...]  # its installation, to be read (none for a system program)


@dataclass(frozen=True)
class Jail:
    launcher: str
    confine: bool  # False: rlimits only (the sandbox was turned off explicitly)
    read_paths: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    # Each program's path and installation, found once: PATH lookups cost more than the rest
    # of a spawn's preparation. A program not found is looked up again next time.
    _found: dict[str, _Program] = field(default_factory=dict, compare=False, repr=False)

    def command(self, argv: list[str], workdir: Path, limits: Limits) -> list[str]:
        """`argv`, run through the launcher with `limits` and, when confining, its rules.
        The program is named by its path, so the launcher's exec searches nothing.

        Raises FileNotFoundError when the prover's program cannot be found, as a direct spawn
        would: its exec happens in the launcher, whose failure would read as the prover's."""
        program = self._program(argv[0])
        argv = [program.path, *argv[1:]]
        line = [self.launcher, CWD_OPTION, str(workdir), "--cpu", str(limits.cpu_seconds)]
        if limits.memory_bytes > 0:
            line += ["--as", str(limits.memory_bytes)]
        if limits.file_bytes > 0:
            line += ["--fsize", str(limits.file_bytes)]
        if not self.confine:
            return [*line, "--no-sandbox", "--", *argv]
        line += self._fixed_rules
        for path in (*program.home, *_files_named(argv)):
            line += ["--ro", path]
        return [*line, "--rw", str(workdir), "--", *argv]

    @functools.cached_property
    def _fixed_rules(self) -> list[str]:
        """The rules every attempt gets, worked out once: its attempt directory is added."""
        rules: list[str] = []
        system = _system_rules()
        # The operator's paths as given (one may appear later), unless a system path has them.
        for path in (*system, *(p for p in self.read_paths if not _beneath(p, system))):
            rules += ["--ro", path]
        for path in (*WRITABLE_DEVICES, *self.writable):
            rules += ["--rw", path]
        return rules

    def _program(self, name: str) -> _Program:
        """Where the program is; FileNotFoundError if it cannot be found."""
        program = self._found.get(name)
        if program is None:
            program = _find(name)
            if program is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
            self._found[name] = program
        return program


def launch_failure(exit_code: int | None, output: str) -> str | None:
    """The launcher's own complaint, when it (not the prover) ended the process: it could not
    confine it (126) or could not execute it (127)."""
    first = output.lstrip().partition("\n")[0]
    if exit_code in (126, 127) and first.startswith(f"{LAUNCHER}: "):
        return first.removeprefix(f"{LAUNCHER}: ")[:300]
    return None


def find_launcher(configured: str = "") -> str | None:
    """The launcher: as configured, else beside this Python (a virtualenv's bin), else PATH."""
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    beside = Path(sys.executable).parent / LAUNCHER
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(LAUNCHER)


def landlock_abi(launcher: str) -> int:
    probe = subprocess.run([launcher, "--probe"], capture_output=True, text=True, check=False)
    try:
        return int(probe.stdout.strip())
    except ValueError:
        return 0


def make_jail(
    enabled: bool, configured: str, read_paths: Iterable[str], writable: Iterable[str]
) -> tuple[Jail | None, int]:
    """The jail to run provers in, and the Landlock ABI it gets (0 when not confining).

    Raises SandboxError when the sandbox is enabled but the launcher or Landlock is missing:
    provers never run unconfined by accident.
    """
    launcher = find_launcher(configured)
    if not enabled:
        return (Jail(launcher, confine=False) if launcher else None), 0
    if launcher is None:
        raise SandboxError(
            f"the prover sandbox needs {LAUNCHER} (built by scripts/setup.sh); "
            "set sandbox_launcher, or sandbox = false to run provers unconfined"
        )
    abi = landlock_abi(launcher)
    if abi < 1:
        raise SandboxError(
            "the prover sandbox needs Landlock, which this kernel does not offer; "
            "set sandbox = false to run provers unconfined"
        )
    return Jail(launcher, True, tuple(read_paths), tuple(writable)), abi


def _find(name: str) -> _Program | None:
    """The program's path, and the installation it comes from (`/opt/x` for
    `/opt/x/bin/prover`; none when that is the root itself); None when it cannot be found."""
    found = shutil.which(name)
    if found is None:
        return None
    real = Path(os.path.realpath(found))
    home = real.parent.parent if real.parent.name == "bin" else real.parent
    if str(home) == "/" or _beneath(str(home), _system_rules()):
        return _Program(os.path.abspath(found), ())  # readable already, as a system path
    return _Program(os.path.abspath(found), (str(home),))


@functools.cache
def _system_rules() -> tuple[str, ...]:
    """`SYSTEM_PATHS` as rules, each once: symbolic links resolved (a Landlock rule applies to
    what a link points to), those missing left out, and those beneath another left out (a rule
    covers everything beneath its directory). On a merged-/usr system /bin, /sbin, /lib and
    /lib64 are links into /usr, and /etc/localtime points into it: one rule for all six. Each
    rule costs the launcher an open and four more system calls per prover."""
    real = list(dict.fromkeys(os.path.realpath(p) for p in SYSTEM_PATHS if os.path.exists(p)))
    return tuple(p for p in real if not _beneath(p, [r for r in real if r != p]))


def _beneath(path: str, roots: Iterable[str]) -> bool:
    """Whether `path` exists and is, once resolved, one of `roots` or beneath one."""
    if not os.path.exists(path):
        return False
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(root) for root in roots)


def _files_named(argv: list[str]) -> list[str]:
    """Absolute files named on the command line (a script, say)."""
    return [a for a in argv[1:] if a.startswith("/") and os.path.isfile(a)]
