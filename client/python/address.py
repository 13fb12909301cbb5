"""Service addresses: "host:port" for TCP, "unix:/path" for a Unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    host: str = ""
    port: int = 0
    path: str = ""  # set for a Unix socket

    @classmethod
    def parse(cls, text: str) -> Address:
        if text.startswith("unix:"):
            return cls(path=text.removeprefix("unix:"))
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{text!r} is neither host:port nor unix:/path")
        return cls(host=host.strip("[]") or "127.0.0.1", port=int(port))

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


class NotTheServer(PermissionError):
    """The process behind a Unix socket is not the service's user: nothing is sent to it."""


async def connect_unix(path: str, trusted_uids: frozenset[int] | None = None) -> socket.socket:
    """A connected Unix socket whose peer runs as this user (or root), checked with
    SO_PEERCRED before a single byte, credential included, goes out. Another local user who
    swapped the socket or its directory is refused."""
    trusted = trusted_uids if trusted_uids is not None else frozenset({os.getuid(), 0})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", raw)
        if uid not in trusted:
            raise NotTheServer(f"{path} is served by uid {uid} (pid {pid}), not by this user")
    except BaseException:
        sock.close()
        raise
    return sock
