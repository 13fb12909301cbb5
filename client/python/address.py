"""Service addresses: "host:port" for TCP, "unix:/path" for a Unix socket."""

from __future__ import annotations

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
