"""Two small helper processes for bench/core.py, each driven by lines on its stdin.

- `watch`: sees processes reaped from outside. Given pids, it opens a pidfd on each (before the
  trigger), then reports the CLOCK_MONOTONIC instant the last one was reaped. A pidfd turns
  readable when its process exits; from then on the process is a zombie until its parent
  reaps it, and `pidfd_send_signal(fd, 0)` fails with ESRCH only once it is reaped. So the
  watcher sleeps on the pidfds while they run and looks closely only between exit and reap.
- `bare`: the floor. Spawns the same prover processes the service would (own session, output
  on a pipe), and on `kill` sends SIGKILL to every group and reaps them one after another: no
  RPC, no event loop, no logs, nothing else.

Both run in their own process, so neither competes for the harness's interpreter lock.
Run as `python -m bench.preemption.floor watch` or `... bare CWD ARGV_JSON...`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time


def watch() -> None:
    for line in sys.stdin:
        fds: dict[int, int] = {}
        for pid in map(int, line.split()):
            with contextlib.suppress(ProcessLookupError):
                fds[os.pidfd_open(pid)] = pid
        print("ready", flush=True)
        last = time.monotonic_ns()
        exited: set[int] = set()
        while fds:
            running = [fd for fd in fds if fd not in exited]
            # Asleep while everything runs; once one has exited, only a short look.
            timeout = 0.0 if exited else 30.0
            if running:
                exited.update(select.select(running, [], [], timeout)[0])
            for fd in list(exited):
                try:
                    signal.pidfd_send_signal(fd, 0)
                except ProcessLookupError:
                    last = time.monotonic_ns()
                    exited.discard(fd)
                    del fds[fd]
                    os.close(fd)
            if exited:
                time.sleep(20e-6)
        print(last, flush=True)


def bare(cwd: str, argvs: list[list[str]]) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": cwd}
    processes: list[subprocess.Popen[bytes]] = []
    for line in sys.stdin:
        if line.strip() == "spawn":
            processes = [
                subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                for argv in argvs
            ]
            print(" ".join(str(p.pid) for p in processes), flush=True)
        elif line.strip() == "kill":
            for p in processes:
                os.killpg(p.pid, signal.SIGKILL)
            for p in processes:
                p.wait()
            for p in processes:
                assert p.stdout is not None
                p.stdout.close()
            print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "watch":
        watch()
    else:
        bare(sys.argv[2], [json.loads(a) for a in sys.argv[3:]])
