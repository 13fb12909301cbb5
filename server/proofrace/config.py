"""Server settings: built-in defaults, then a TOML file, then PROOFRACE_* variables, then flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofrace.wire.limits import PeerLimits

ENV_PREFIX = "PROOFRACE_"
DEFAULT_METRICS_PORT = 7341
DEFAULT_WORKER_METRICS_PORT = 7343


_MAX_WIRE_S = (2**32 - 1) // 1000  # the largest number of seconds a UInt32 of ms holds


class ConfigError(ValueError):
    pass


def default_state_dir() -> str:
    """Where the service keeps what outlives it (the verdict cache): $XDG_STATE_HOME/proofrace."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return f"{state}/proofrace"


def default_socket() -> str:
    """The local default: a Unix socket in the user's runtime directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/proofrace-{os.getuid()}"
    return f"{runtime}/proofrace/proofrace.sock"


@dataclass
class Settings:
    # Where the Cap'n Proto service listens: a Unix socket (mode 0600), and/or "host:port"
    # entries for TCP. With neither set, a server listens on default_socket(). TCP beyond
    # loopback needs TLS, or insecure_tcp = true.
    listen: list[str] = field(default_factory=list)
    unix: str = ""
    # Prometheus /metrics and /healthz; "" turns the endpoint off.
    metrics: str = f"127.0.0.1:{DEFAULT_METRICS_PORT}"
    # Per-solve deadline when the request gives none (timeoutMs = 0), and the cap on any.
    default_timeout_s: float = 300.0
    max_timeout_s: float = 3600.0
    # SIGTERM to SIGKILL, for a prover that does not stop when asked.
    grace_s: float = 0.2
    max_request_bytes: int = 16 * 1024 * 1024
    output_tail_bytes: int = 16 * 1024
    # Address-space limit per prover process (RLIMIT_AS), in MiB; 0 for none.
    memory_limit_mb: int = 8192
    # Largest file a prover may write (RLIMIT_FSIZE), in MiB: bounds its scratch disk use.
    temp_disk_mb: int = 1024
    # Solves in flight at once: in all, and per connection; attempts in one solve.
    max_solves: int = 256
    max_solves_per_connection: int = 32
    max_attempts_per_solve: int = 16
    # TLS for TCP: the server's certificate chain and key (PEM); with tls_client_ca, clients
    # must present a certificate signed by that CA (mutual TLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # A shared secret clients must present through Gate.login before anything else; read
    # from auth_secret_file, or given directly (PROOFRACE_AUTH_SECRET). Empty: no login.
    auth_secret: str = ""
    auth_secret_file: str = ""
    # Allow plain TCP on addresses beyond loopback (inside a private network, say).
    insecure_tcp: bool = False
    # Close a connection silent for this long (0: never), cancelling its solves as
    # `disconnected`; clients ping meanwhile. A peer must log in within login_timeout_s.
    idle_timeout_s: float = 0.0
    login_timeout_s: float = 10.0
    # A TOML registry whose tables add provers or replace built-in ones.
    provers_file: str = ""
    # Parent of the server's scratch directory; "" for the system's temporary directory.
    temp_dir: str = ""
    log_format: str = "auto"
    log_level: str = "info"
    # Dispatcher: attempts it runs itself at once (-1: no limit, 0: only on workers), and
    # workers it dials itself ("host:port"), besides those that register by dialling in.
    local_slots: int = -1
    workers: list[str] = field(default_factory=list)
    # Worker: the dispatcher to register with, the name to register under (default: the host
    # name), and attempts it runs at once (0: one per CPU).
    dispatcher: str = ""
    name: str = ""
    slots: int = 0
    # Worker: reaching a hardened dispatcher. The worker credential it presents (a file), and
    # the CA to check the dispatcher's TLS certificate against (set: dial with TLS).
    credential_file: str = ""
    dispatcher_ca: str = ""
    # The verdict cache: "sqlite" (embedded, a file in state_dir), "redis" (shared by several
    # dispatchers, at cache_url) or "off". At most cache_max_entries verdicts are kept; beyond,
    # the least recently used go.
    cache: str = "sqlite"
    cache_url: str = ""
    cache_path: str = ""
    cache_max_entries: int = 100_000
    # A solve identical (by the cache key) to a race already running joins that race.
    share_races: bool = True
    # What outlives the process; "" for $XDG_STATE_HOME/proofrace (~/.local/state/proofrace).
    state_dir: str = ""
    # Roles. The worker credential (16 bytes or more): a dispatcher opens its WorkerHub to it
    # and presents it to the workers it dials; a listening worker requires it. Without it, a
    # worker falls back to its credential_file. A client credential never grants registration.
    worker_secret: str = ""
    worker_secret_file: str = ""
    # Mutual TLS: a client certificate (from tls_client_ca) whose subject OU is this value
    # has the worker role.
    tls_worker_ou: str = ""
    # Dispatcher.registerWorker for anyone who may solve, as before roles existed: only for a
    # private, trusted network. Off by default; a warning at start when on.
    open_registration: bool = False
    # Workers registered at once, and the slots any one of them may claim.
    max_workers: int = 64
    max_worker_slots: int = 64
    # Dialling out (worker to dispatcher, dispatcher to workers): a client certificate to
    # present, and the CA that the dispatcher checks its workers' certificates with.
    client_cert: str = ""
    client_key: str = ""
    workers_ca: str = ""
    # The prover sandbox (Landlock + seccomp through the proofrace-jail launcher). Turning it
    # off is explicit and logged at start. sandbox_paths: more paths provers may read and
    # execute (provers installed outside /usr, say); sandbox_writable: more they may write.
    sandbox: bool = True
    sandbox_launcher: str = ""
    sandbox_paths: list[str] = field(default_factory=list)
    sandbox_writable: list[str] = field(default_factory=list)
    # Peer limits: each is answered with `overloaded`/`invalidRequest` or a closed connection.
    max_connections: int = 512
    max_connections_per_address: int = 64
    max_calls_in_flight: int = 256  # per connection
    max_result_waiters: int = 16  # per token
    first_message_s: float = 10.0  # accept to the first complete message
    message_s: float = 30.0  # a message begun must be complete by then
    write_stall_s: float = 30.0  # a peer that reads nothing for this long is dropped
    max_answers_unread: int = 1024  # answers produced while the peer reads nothing
    max_solves_per_identity: int = 64  # per caller (address, uid or certificate)
    max_attempts_per_identity: int = 128
    max_goal_id_chars: int = 256
    max_reason_chars: int = 1024
    max_prover_name_chars: int = 64
    # Failed logins from one peer address (across connections) before it is refused for
    # login_backoff_s, doubling with every further failure.
    max_failed_logins_per_address: int = 10
    login_backoff_s: float = 1.0

    @classmethod
    def load(
        cls,
        config_file: str | None = None,
        environ: Mapping[str, str] = os.environ,
        overrides: Mapping[str, Any] | None = None,
        defaults: Mapping[str, Any] | None = None,
        local_default: bool = True,
    ) -> Settings:
        """`local_default`: with no address configured, listen on `default_socket()`."""
        settings = cls()
        settings._apply(defaults or {}, origin="defaults")
        if config_file:
            try:
                document = tomllib.loads(Path(config_file).read_text())
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise ConfigError(f"{config_file}: {e}") from None
            settings._apply(document.get("server", document), origin=config_file)
        from_env = {
            f.name: environ[ENV_PREFIX + f.name.upper()]
            for f in dataclasses.fields(cls)
            if ENV_PREFIX + f.name.upper() in environ
        }
        settings._apply(from_env, origin="environment", from_text=True)
        settings._apply({k: v for k, v in (overrides or {}).items() if v is not None}, "flags")
        if local_default and not settings.listen and not settings.unix:
            settings.unix = default_socket()
        settings._check()
        return settings

    def _apply(self, values: Mapping[str, Any], origin: str, from_text: bool = False) -> None:
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name, value in values.items():
            if name not in fields:
                raise ConfigError(f"{origin}: unknown setting {name!r}")
            current = getattr(self, name)
            try:
                setattr(self, name, _coerce(value, current, from_text))
            except (TypeError, ValueError):
                raise ConfigError(f"{origin}: {name} = {value!r} is not valid") from None

    def _check(self) -> None:
        addresses = [*self.listen, *self.workers, *filter(None, [self.metrics, self.dispatcher])]
        for entry in addresses:
            split_host_port(entry)
        if self.grace_s < 0 or self.default_timeout_s <= 0 or self.max_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        # Both travel as UInt32 milliseconds (ping's idleTimeoutMs, an outcome's deadlineMs).
        if self.max_timeout_s > _MAX_WIRE_S or self.default_timeout_s > _MAX_WIRE_S:
            raise ConfigError(f"timeouts are at most {_MAX_WIRE_S} s")
        if not 0 <= self.idle_timeout_s <= _MAX_WIRE_S:
            raise ConfigError(f"idle_timeout_s is between 0 and {_MAX_WIRE_S}")
        if self.cache not in ("sqlite", "redis", "off"):
            raise ConfigError("cache is one of sqlite, redis, off")
        if self.cache == "redis" and not self.cache_url:
            raise ConfigError("cache = redis needs cache_url (redis://host:port or unix:///path)")
        if self.cache_max_entries < 1:
            raise ConfigError("cache_max_entries must be at least 1")
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError("log_format is one of auto, json, console")
        if (self.auth_secret or self.auth_secret_file) and len(self.secret()) < 16:
            raise ConfigError("the login secret must be at least 16 bytes")
        if (self.worker_secret or self.worker_secret_file) and len(self.worker_credential()) < 16:
            raise ConfigError("the worker secret must be at least 16 bytes")
        if self.worker_credential() and self.worker_credential() == self.secret():
            raise ConfigError("the worker secret must differ from the login secret")
        if self.tls_worker_ou and not self.tls_client_ca:
            raise ConfigError("tls_worker_ou needs tls_client_ca")
        if bool(self.client_cert) != bool(self.client_key):
            raise ConfigError("client_cert and client_key go together")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca needs tls_cert and tls_key")
        if not self.tls_cert and not self.insecure_tcp:
            for entry in self.listen:
                host, _ = split_host_port(entry)
                if not _is_loopback(host):
                    raise ConfigError(
                        f"refusing plain TCP on {entry}: set tls_cert and tls_key, "
                        "or insecure_tcp = true for a private network"
                    )

    def cache_file(self) -> Path:
        """The embedded cache's SQLite file."""
        if self.cache_path:
            return Path(self.cache_path)
        return Path(self.state_dir or default_state_dir()) / "verdicts.sqlite3"

    def peer_limits(self) -> PeerLimits:
        return PeerLimits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PeerLimits)})

    def secret(self) -> bytes:
        """The login secret, or b"" when none is required."""
        if self.auth_secret_file:
            return read_secret_file(self.auth_secret_file, "auth_secret_file")
        return self.auth_secret.encode()

    def worker_credential(self) -> bytes:
        """The worker credential, or b"" when the worker role needs none."""
        if self.worker_secret_file:
            return read_secret_file(self.worker_secret_file, "worker_secret_file")
        if self.worker_secret:
            return self.worker_secret.encode()
        if self.credential_file:
            return read_secret_file(self.credential_file, "credential_file")
        return b""


def read_secret_file(path: str, setting: str) -> bytes:
    """A secret from a file that others (beyond its owner and group) can neither read nor
    write: anyone who can read it holds the role it grants, and anyone who can write it can
    choose it. (Group read stays allowed for Kubernetes' fsGroup-mounted secrets.)"""
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & 0o027:
                raise ConfigError(
                    f"{setting}: {path} is open to others (mode {mode & 0o777:o}); "
                    "make it 0600 or 0400"
                )
            return handle.read().strip()
    except OSError as e:
        raise ConfigError(f"{setting}: {e.strerror}") from None


def _coerce(value: Any, current: Any, from_text: bool) -> Any:
    if isinstance(current, list):
        if from_text and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value]
    if isinstance(current, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return type(current)(value)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def split_host_port(entry: str) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{entry!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)
