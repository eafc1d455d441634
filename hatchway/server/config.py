"""The server's configuration: flags, then environment, in one typed object."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .forwarded import Network


@dataclass(frozen=True)
class ServerConfig:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    database: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    region: str = "us-east-1"
    log_json: bool = False
    # Peers whose X-Forwarded-* headers are believed (--trusted-proxies); none by default.
    trusted_proxies: tuple[Network, ...] = ()
    # This server process, as other nodes sharing a database see it.
    node_name: str = field(default_factory=socket.gethostname)
    # Data-channel tokens must be used within this long of StartSession/ResumeSession.
    token_lifetime: timedelta = timedelta(minutes=2)
    # A node whose control channel has been silent this long is shown as ConnectionLost.
    ping_timeout: timedelta = timedelta(minutes=3)
    # How long the sessions of an agent whose control channel dropped wait for it to come
    # back before they end (`hatchway server --agent-grace`).
    agent_grace_seconds: float = 90.0
    # After the end of a session, how long an agent has to close its data channel itself
    # before the relay closes it (see Relay._hang_up_later).
    agent_hangup_seconds: float = 10.0
    # A WebSocket (data channel, control channel, the console's probe) must send its opening
    # frame within this long of its upgrade; pings do not extend it.
    channel_open_seconds: float = 30.0
    # How often this server records in the database that its control channels are alive.
    heartbeat_seconds: float = 30.0
    max_body_bytes: int = 1024 * 1024
    # A connection must send its first request's headers within this many seconds, and one
    # address (trusted proxies aside) may hold this many that have not yet (slowloris). A
    # burst of connects can all be accepted before any is read, so the cap is generous.
    header_timeout: float = 20.0
    pending_per_address: int = 256
    # An idle keep-alive connection (or one slow to send its next request) is closed after.
    keepalive_timeout: float = 75.0
    # A request body (of the JSON API) must have arrived within this many seconds.
    body_timeout: float = 60.0
    # Seconds in a "minute" of idleSessionTimeout and maxSessionDuration; tests shrink it.
    preference_minute: float = 60.0
    # How often a session's last activity is saved (so a restart keeps its idle clock);
    # a crash loses at most this much of it.
    activity_save_seconds: float = 30.0
    # How long HatchwayDiagnoseInstance waits for the agent's answer (doctor).
    agent_answer_seconds: float = 15.0

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    # --- A node of a cluster (issue 15): N servers on one database behind a load balancer.
    # The URL this node's peers reach it on (--advertise-url); None derives it from the
    # listen address (see peer_url).
    advertise_url: str | None = None
    # The master key file every node shares (--master-key); None means DIR/master.key,
    # created on the first start. A named file must exist: see Keystore.load_or_create.
    master_key: Path | None = None

    @property
    def peer_url(self) -> str:
        """Where other nodes reach this one: --advertise-url, else the listen address. A
        wildcard address (0.0.0.0, ::) names no host, so the machine's host name stands in.
        With --listen HOST:0 the port is known only once bound: run.serve binds first and
        puts the real port in the config before the app starts, so this is right there."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = socket.gethostname() if _unspecified(self.host) else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"


def _unspecified(host: str) -> bool:
    """Whether ``host`` is a wildcard listen address (0.0.0.0, ::)."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False  # a host name
