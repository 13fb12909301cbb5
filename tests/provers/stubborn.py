"""A prover that misbehaves on purpose, for tests of supervision.

By default it reads the problem and then thinks forever (without using CPU). Options make it
answer at once, ignore SIGTERM, fork helpers into its process group, or flood its output.
Once set up, it says so on the named pipe given by --ready, if a test is listening there.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("problem")
    parser.add_argument("--answer", help="print this line and exit")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--fork", type=int, default=0, help="helpers to fork first")
    parser.add_argument("--flood", action="store_true", help="write output without end")
    parser.add_argument("--flood-before-ready", type=int, default=0, help="bytes to write first")
    parser.add_argument("--ready", help="a named pipe to announce readiness on")
    parser.add_argument("--attack", action="store_true", help="try what the problem says")
    args = parser.parse_args()
    with open(args.problem, "rb") as f:
        text = f.read()
    if args.attack:
        attack(text.decode())
        return
    if args.answer:
        print(args.answer, flush=True)
        return
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for _ in range(args.fork):
        if os.fork() == 0:
            while True:
                signal.pause()
    print("thinking", flush=True)
    chunk = b"c still thinking, with a great deal to say about it\n" * 1024
    written = 0
    while args.flood and written < args.flood_before_ready:
        sys.stdout.buffer.write(chunk)
        written += len(chunk)
    sys.stdout.flush()
    announce(args.ready)
    while args.flood:
        sys.stdout.buffer.write(chunk)
    while True:
        signal.pause()


def attack(script: str) -> None:
    """Each line of the problem is an attempt to reach beyond the attempt's directory:
    `connect HOST PORT`, `udp HOST PORT`, `unix PATH`, `kill PID`, `write PATH`, `read PATH`.
    One line of output each, `<verb> ok` or `<verb> blocked (<reason>)`; then `sat`."""
    import resource
    import socket

    for line in script.splitlines():
        verb, *rest = line.split()
        try:
            if verb == "connect":
                socket.create_connection((rest[0], int(rest[1])), timeout=5).close()
            elif verb == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.sendto(b"leak", (rest[0], int(rest[1])))
            elif verb == "unix":
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                    unix.connect(rest[0])
            elif verb == "kill":
                os.kill(int(rest[0]), signal.SIGTERM)
            elif verb == "write":
                with open(rest[0], "a") as out:
                    out.write("written from a problem\n")
            elif verb == "read":
                with open(rest[0], "rb") as source:
                    source.read()
            elif verb == "limits":
                cpu = resource.getrlimit(resource.RLIMIT_CPU)
                fsize = resource.getrlimit(resource.RLIMIT_FSIZE)
                print(f"limits cpu={cpu[0]} fsize={fsize[0]}", flush=True)
                continue
            print(f"{verb} ok", flush=True)
        except OSError as error:
            print(f"{verb} blocked ({error.strerror})", flush=True)
    print("sat", flush=True)


def announce(pipe: str | None) -> None:
    """Tell a listening test that we are set up; nobody listening is fine too."""
    if not pipe:
        return
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader (ENXIO), or no pipe
        return
    try:
        os.write(fd, b"ready\n")
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
