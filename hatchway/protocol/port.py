"""Port sessions, sans-I/O: which forwarding mode a session runs in, where it goes, and
what each side says when the destination cannot be reached.

The mode depends on both ends (data-channel.md §5.2, agent.md §5):

* **mux**: ``type`` is ``LocalPortForwarding`` and both peers are new enough. Many TCP
  connections share the session as smux v1 streams.
* **basic**: ``LocalPortForwarding`` with an old peer. One connection at a time.
* **stream**: no ``type`` (``AWS-StartSSHSession``). The session is one byte stream;
  the client wires it to stdin and stdout, which is what an SSH ProxyCommand needs.

Nothing here resolves names or opens sockets; ``denied_address`` takes an address the
caller has resolved.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import struct
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError

LOCAL_PORT_FORWARDING = "LocalPortForwarding"

# The reference plugin multiplexes only for agents strictly newer than this (§5.3).
MUX_AFTER_AGENT_VERSION = "3.0.196.0"
# The official agent multiplexes for clients at least this new (agent.md §5).
MUX_FROM_CLIENT_VERSION = "1.1.70"
# Clients up to this version keep smux keep-alive on and expect NOPs (agent.md §5).
KEEPALIVE_UP_TO_CLIENT_VERSION = "1.2.331.0"
# Basic mode ends with Flag TerminateSession only for agents newer than this (§5.3).
TERMINATE_FLAG_AFTER_AGENT_VERSION = "2.3.722.0"

# Mgs.DeniedPortForwardingRemoteIPs: the instance metadata, DNS and time services that a
# remote-host forward must never reach (agent.md §5).
DENIED_REMOTE_IPS = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.169.253",
        "fd00:ec2::253",
        "169.254.169.123",
        "fd00:ec2::123",
        "169.254.169.250",
        "169.254.169.251",
        "fd00:ec2::240",
    )
)

CONNECT_FAILED_TEXT = "\nConnection to destination port failed, check SSM Agent logs.\n"


class PortMode(enum.Enum):
    MUX = "mux"
    BASIC = "basic"
    STREAM = "stream"


def parse_version(text: str) -> tuple[int, ...] | None:
    try:
        parts = tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None
    return parts if parts and all(part >= 0 for part in parts) else None


def plugin_version_greater(version: str, than: str) -> bool:
    """The reference plugin's test: dot-separated integers with the same number of parts;
    anything unparsable or of another length counts as "not greater" (§5.2)."""
    a, b = parse_version(version), parse_version(than)
    return a is not None and b is not None and len(a) == len(b) and a > b


def agent_compare_versions(this: str, other: str) -> int:
    """The official agent's ordering (versionutil.Compare, strict): component by
    component, as numbers when both are numbers and as text otherwise; when one runs
    out, the shorter is the lesser. So a ClientVersion such as ``pyssm-client/0.1.0``
    counts as newer than any numeric one, and gets mux mode. (Go also applies semver
    rules when both sides parse as semver; for plain x.y.z the results agree.)"""
    mine, theirs = this.split("."), other.split(".")
    for a, b in zip(mine, theirs, strict=False):
        if a.isdigit() and b.isdigit():
            if int(a) != int(b):
                return -1 if int(a) < int(b) else 1
        elif a != b:
            return -1 if a < b else 1
    return (len(mine) > len(theirs)) - (len(mine) < len(theirs))


def client_port_mode(properties: dict[str, Any], agent_version: str) -> PortMode:
    """The mode a client runs, from the handshake's properties and AgentVersion."""
    if properties.get("type") != LOCAL_PORT_FORWARDING:
        return PortMode.STREAM
    if plugin_version_greater(agent_version, MUX_AFTER_AGENT_VERSION):
        return PortMode.MUX
    return PortMode.BASIC


def agent_port_mode(properties: dict[str, Any], client_version: str) -> PortMode:
    """The mode an agent runs, from the document's properties and the ClientVersion."""
    if properties.get("type") != LOCAL_PORT_FORWARDING:
        return PortMode.STREAM
    if agent_compare_versions(client_version, MUX_FROM_CLIENT_VERSION) >= 0:
        return PortMode.MUX
    return PortMode.BASIC


def agent_sends_keepalive(client_version: str) -> bool:
    return agent_compare_versions(client_version, KEEPALIVE_UP_TO_CLIENT_VERSION) <= 0


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the agent dials: ``host`` is "localhost" unless the document named one."""

    host: str
    port: int
    remote: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def go_map(properties: dict[str, Any]) -> str:
    """Properties as Go prints a map[string]interface{}, as the agent's errors show them."""
    return "map[" + " ".join(f"{key}:{properties[key]}" for key in sorted(properties)) + "]"


def destination_from(properties: dict[str, Any]) -> Destination:
    """The destination of a port session's resolved properties. Raises ProtocolError with
    the agent's words (agent.md §5) when they do not name one."""
    for name in ("portNumber", "host", "type", "localPortNumber"):
        value = properties.get(name)
        if value is not None and not isinstance(value, str):
            kind = "array" if isinstance(value, list) else type(value).__name__
            raise ProtocolError(
                "Unable to remarshal session properties. json: cannot unmarshal "
                f"{kind} into Go struct field PortParameters.{name} of type string"
            )
    port_text = str(properties.get("portNumber") or "").strip()
    if not port_text:
        raise ProtocolError(f"Port number is empty in session properties. {go_map(properties)}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ProtocolError(f"Port number {port_text} is not a port between 1 and 65535.")
    host = str(properties.get("host") or "").strip()
    return Destination(host or "localhost", int(port_text), remote=bool(host))


def denied_address(address: str) -> bool:
    """Whether a resolved address is one a remote-host forward must not reach."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip in DENIED_REMOTE_IPS


def forbidden_text(host: str) -> str:
    return f"Forwarding to IP address {host} is forbidden."


# --- ConnectToPortError with its reason ---------------------------------------------------

_FLAG = struct.Struct(">I")
CONNECT_TO_PORT_ERROR = 3


@dataclass(frozen=True, slots=True)
class ConnectError:
    """Why the agent could not reach the destination for one smux stream.

    Reference clients get the bare 4-byte Flag 3. A client that accepted Hatchway's
    optional ``PortErrorDetails`` handshake action gets the flag followed by this as
    JSON, so it can tell the user what went wrong instead of "check the agent logs".
    """

    stream_id: int
    destination: str
    error: str

    def to_flag_payload(self) -> bytes:
        body = {"StreamId": self.stream_id, "Destination": self.destination, "Error": self.error}
        return _FLAG.pack(CONNECT_TO_PORT_ERROR) + json.dumps(body).encode()

    @classmethod
    def from_flag_payload(cls, data: bytes) -> ConnectError | None:
        """The details carried after a Flag 3, or None for a bare flag or unusable JSON."""
        if len(data) <= _FLAG.size or _FLAG.unpack_from(data)[0] != CONNECT_TO_PORT_ERROR:
            return None
        try:
            body = json.loads(data[_FLAG.size :])
            return cls(int(body["StreamId"]), str(body["Destination"]), str(body["Error"]))
        except (ValueError, KeyError, TypeError):
            return None
