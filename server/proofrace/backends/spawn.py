"""Starting a prover process: the leader of a new session and process group, with stdin on
/dev/null and stdout and stderr together on one pipe.

A command that starts with a launcher (the sandbox's `proofrace-jail`, which sets the limits,
enters the attempt's directory and confines the prover in the child) is started with one
`posix_spawn`: the C library's vfork and exec, nothing run in Python in between, and a failed
exec reported by the call itself. It is called through ctypes, which lets go of the
interpreter lock for the call: `os.posix_spawn` keeps it while vfork waits for the exec, and
a spawn on a spawn thread then froze the event loop (0.4 ms at the median and 2.5 ms at p90
with 32 clients). The child starts with every signal at its default disposition and none
blocked: the server ignores SIGPIPE and SIGXFSZ, which a prover must not inherit.

Without a launcher, `subprocess.Popen` starts it (only Popen can set the working directory),
also on its vfork path since no `preexec_fn` is given, and the parent sets the limits right
after the exec.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Given in full on the launcher's command line: it enters the directory itself.
CWD_OPTION = "--cwd"


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int  # RLIMIT_CPU soft limit; the hard limit is one second more
    memory_bytes: int  # RLIMIT_AS; 0 for no limit
    file_bytes: int  # RLIMIT_FSIZE: the largest file it may write; 0 for no limit
    grace_seconds: float  # stop_signal to SIGKILL, when stop_signal is not SIGKILL
    stop_signal: int = signal.SIGKILL  # what preemption sends first


class Child:
    """A started process: its pid, the read end of its output pipe, and, once reaped, how it
    ended (a negative signal number, or the exit code)."""

    def __init__(self, pid: int, output: int, popen: subprocess.Popen[bytes] | None = None):
        self.pid = pid
        self.output = output  # -1 once closed
        self._popen = popen
        self.returncode: int | None = None

    def reaped(self, returncode: int) -> None:
        self.returncode = returncode
        if self._popen is not None:
            self._popen.returncode = returncode  # Popen must not wait for it again

    def wait(self) -> None:
        """Reap it, blocking: only for a process just sent SIGKILL."""
        if self.returncode is None:
            _pid, status = os.waitpid(self.pid, 0)
            self.reaped(os.waitstatus_to_exitcode(status))

    def close_output(self) -> None:
        if self.output >= 0:
            os.close(self.output)
            self.output = -1


def spawn(
    argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, launched: bool = False
) -> Child:
    """Start `argv` in `cwd`. `launched`: argv is a launcher's command line, which applies the
    limits and enters `cwd` itself (given with `CWD_OPTION`). Raises OSError."""
    if launched:
        return _posix_spawn(argv, env)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None
    child = Child(proc.pid, os.dup(proc.stdout.fileno()), proc)
    proc.stdout.close()
    try:
        _apply_limits(proc.pid, limits)
    except BaseException:
        proc.kill()
        child.wait()
        child.close_output()
        raise
    return child


def _posix_spawn(argv: list[str], env: dict[str, str]) -> Child:
    # Every descriptor this process opens is close-on-exec (Python's default, and kj's), so
    # only the three set here reach the launcher; it closes any other before the prover runs.
    read_end, write_end = os.pipe()
    try:
        pid = _spawn_with_output(argv, env, write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return Child(pid, read_end)


def _spawn_with_output(argv: list[str], env: dict[str, str], output: int) -> int:
    """posix_spawnp of `argv`: stdin on /dev/null, stdout and stderr on `output`."""
    actions = ctypes.create_string_buffer(_FILE_ACTIONS_BYTES)
    _check(_libc.posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init")
    try:
        _check(
            _libc.posix_spawn_file_actions_addopen(actions, 0, b"/dev/null", os.O_RDONLY, 0),
            "posix_spawn_file_actions_addopen",
        )
        for fd in (1, 2):
            _check(
                _libc.posix_spawn_file_actions_adddup2(actions, output, fd),
                "posix_spawn_file_actions_adddup2",
            )
        args = _strings([os.fsencode(a) for a in argv])
        environment = _strings([os.fsencode(f"{k}={v}") for k, v in env.items()])
        pid = ctypes.c_int()
        _check(
            _libc.posix_spawnp(ctypes.byref(pid), args[0], actions, _ATTRIBUTES, args, environment),
            argv[0],
        )
        return pid.value
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)


# The C library's posix_spawn, its file actions and attributes, as opaque buffers larger than
# any C library's structures (glibc's are 80 and 336 bytes; a sigset_t is 128).
_libc = ctypes.CDLL(None, use_errno=True)
_FILE_ACTIONS_BYTES = 256
_ATTRIBUTES_BYTES = 1024
_SIGSET_BYTES = 256
# The same values in glibc and musl.
_SETSIGDEF, _SETSIGMASK, _SETSID = 0x04, 0x08, 0x80
_libc.posix_spawnp.argtypes = [
    ctypes.POINTER(ctypes.c_int),
    ctypes.c_char_p,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(ctypes.c_char_p),
]
_libc.posix_spawn_file_actions_addopen.argtypes = [
    ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint
]  # fmt: skip
_libc.posix_spawn_file_actions_adddup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
_libc.posix_spawnattr_setflags.argtypes = [ctypes.c_void_p, ctypes.c_short]


def _check(error: int, what: str) -> None:
    """posix_spawn and its helpers return the error number itself."""
    if error:
        raise OSError(error, os.strerror(error), what)


def _strings(items: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated array of C strings."""
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


def _attributes() -> ctypes.Array[ctypes.c_char]:
    """Made once and only read by every spawn: a new session, every signal at its default
    disposition, none blocked."""
    attributes = ctypes.create_string_buffer(_ATTRIBUTES_BYTES)
    every, none = (
        ctypes.create_string_buffer(_SIGSET_BYTES),
        ctypes.create_string_buffer(_SIGSET_BYTES),
    )
    _check(_libc.posix_spawnattr_init(attributes), "posix_spawnattr_init")
    # These two return -1 and set errno on failure.
    _check(ctypes.get_errno() if _libc.sigfillset(every) else 0, "sigfillset")
    _check(ctypes.get_errno() if _libc.sigemptyset(none) else 0, "sigemptyset")
    _check(_libc.posix_spawnattr_setsigdefault(attributes, every), "posix_spawnattr_setsigdefault")
    _check(_libc.posix_spawnattr_setsigmask(attributes, none), "posix_spawnattr_setsigmask")
    _check(
        _libc.posix_spawnattr_setflags(attributes, _SETSID | _SETSIGDEF | _SETSIGMASK),
        "posix_spawnattr_setflags",
    )
    return attributes


_ATTRIBUTES = _attributes()


def _apply_limits(pid: int, limits: Limits) -> None:
    # Set from the parent right after exec rather than in a preexec_fn, which is unsafe in a
    # process with threads and would rule out vfork; a prover cannot use meaningful CPU or
    # memory in those microseconds.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        resource.prlimit(pid, resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        if limits.memory_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        if limits.file_bytes > 0:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
