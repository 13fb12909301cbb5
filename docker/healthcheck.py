#!/usr/bin/python3
"""The image's HEALTHCHECK: GET /healthz on the metrics address of the command the container
runs (serve or worker), found the way the entrypoint finds it: a --metrics flag, else
PROOFRACE_METRICS, else the command's default port. Exit 0 when healthy, 1 otherwise."""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"serve": 7341, "worker": 7343}


def metrics_address() -> str | None:
    # PID 1 is tini; its arguments are the container's command.
    with open("/proc/1/cmdline", "rb") as f:
        argv = f.read().decode(errors="replace").split("\0")
    command = next((a for a in argv if a in DEFAULT_PORTS), "serve")
    flags = argv[argv.index(command) + 1 :] if command in argv else []
    for i, arg in enumerate(flags):
        if arg == "--metrics" and i + 1 < len(flags):
            return flags[i + 1]
        if arg.startswith("--metrics="):
            return arg.split("=", 1)[1]
    if "PROOFRACE_METRICS" in os.environ:
        return os.environ["PROOFRACE_METRICS"] or None
    return f"0.0.0.0:{DEFAULT_PORTS[command]}"


def main() -> int:
    address = metrics_address()
    if address is None:
        print("metrics endpoint turned off: nothing to check")
        return 0
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            print(f"{url}: {response.status}")
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as error:
        print(f"{url}: {error.code}")
    except OSError as error:
        print(f"{url}: {error}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
