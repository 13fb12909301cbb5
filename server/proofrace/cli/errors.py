"""What a command-line client says when it cannot do its job: one line naming the likely
cause, and an exit code of its own (from sysexits.h) for each kind of cause. `solve` keeps
0, 1, 2 and 130 for what the server answered: decided, undecided, an error verdict, cancelled.
"""

from __future__ import annotations

import errno
import socket
import ssl

import capnp

from proofrace.client import ConnectError, LoginRefused, LoginRequired

EXIT_USAGE = 64  # the address or a flag is malformed
EXIT_NOINPUT = 66  # the problem or credential file cannot be read
EXIT_NOHOST = 68  # the host name does not resolve
EXIT_UNAVAILABLE = 69  # nothing answers there, or the connection was lost
EXIT_SOFTWARE = 70  # an unexpected fault in this program
EXIT_PROTOCOL = 76  # TLS on one side and not the other, or a certificate not trusted
EXIT_NOPERM = 77  # a login is required, or the credential was refused


class Failure(Exception):
    """A failure explained for the user: its message is the whole story."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def connect_failure(error: BaseException, address: str, tls: bool) -> Failure:
    """Why connecting to `address` (logging in included) failed, as the user can act on it."""
    if isinstance(error, Failure):
        return error
    if isinstance(error, LoginRequired):
        return Failure(
            f"{address} requires a login: give --credential-file FILE "
            "(or set PROOFRACE_CREDENTIAL)",
            EXIT_NOPERM,
        )
    if isinstance(error, LoginRefused):
        return Failure(
            f"{address} refused the credential: check the secret in --credential-file",
            EXIT_NOPERM,
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return Failure(
            f"TLS: {address} presented a certificate that was not accepted "
            f"({error.verify_message}): check --tls-ca, and that the certificate names the "
            "host you dial",
            EXIT_PROTOCOL,
        )
    if isinstance(error, ssl.SSLError):
        return Failure(
            f"TLS handshake with {address} failed ({error.reason or _first_line(error)}): the "
            "server probably speaks plain TCP; drop --tls-ca",
            EXIT_PROTOCOL,
        )
    if isinstance(error, capnp.KjException):
        if not tls and error.type == "DISCONNECTED":
            return Failure(
                f"{address} closed the connection at once: it probably expects TLS; "
                "give --tls-ca CA.pem",
                EXIT_PROTOCOL,
            )
        return Failure(
            f"{address} broke off the connection: {_first_line(error)}", EXIT_UNAVAILABLE
        )
    if isinstance(error, socket.gaierror):
        host = address.rpartition(":")[0]
        return Failure(f"cannot resolve the host name {host!r}: check --addr", EXIT_NOHOST)
    if isinstance(error, ValueError):
        return Failure(f"--addr: {error}", EXIT_USAGE)
    if isinstance(error, TimeoutError):
        return Failure(
            f"{address} did not answer in time: a firewall, a wrong address, or a server "
            "too busy to accept",
            EXIT_UNAVAILABLE,
        )
    absent = (FileNotFoundError, ConnectionRefusedError)
    if address.startswith("unix:") and isinstance(error, absent):
        return Failure(
            f"no server listens on {address.removeprefix('unix:')}: is `proofrace serve` "
            "running, as this user?",
            EXIT_UNAVAILABLE,
        )
    if isinstance(error, PermissionError):
        return Failure(
            f"{address}: permission denied (the server's socket is private to its owner)",
            EXIT_NOPERM,
        )
    if isinstance(error, ConnectionRefusedError):
        return Failure(
            f"connection refused by {address}: no server listens there; is it running, and "
            "is the port right?",
            EXIT_UNAVAILABLE,
        )
    if isinstance(error, OSError) and error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return Failure(f"{address} is unreachable: {error.strerror}", EXIT_UNAVAILABLE)
    if isinstance(error, (OSError, ConnectError)):
        return Failure(f"cannot reach {address}: {_first_line(error)}", EXIT_UNAVAILABLE)
    return Failure(f"internal error while connecting: {_first_line(error)}", EXIT_SOFTWARE)


def lost(error: BaseException, address: str) -> Failure:
    """A failure once connected: the server went away, or refused a call."""
    if isinstance(error, Failure):
        return error
    if isinstance(error, (capnp.KjException, OSError)):
        return Failure(f"lost the connection to {address}: {_first_line(error)}", EXIT_UNAVAILABLE)
    return Failure(f"internal error: {_first_line(error)}", EXIT_SOFTWARE)
