"""What the agent reports about its machine in UpdateInstanceInformation (agent.md §2.1)."""

from __future__ import annotations

import ipaddress
import platform
import socket
from pathlib import Path


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def ip_address() -> str:
    """The first non-loopback, non-link-local address, IPv4 first; 127.0.0.1 otherwise."""
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            candidates.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    except (OSError, ValueError):
        pass
    usable = [a for a in candidates if not (a.is_loopback or a.is_link_local)]
    usable.sort(key=lambda a: a.version)
    return str(usable[0]) if usable else "127.0.0.1"


def instance_information(instance_id: str, agent_version: str) -> dict[str, str]:
    release = os_release()
    return {
        "AgentName": "hatchway-agent",
        "AgentStatus": "Active",
        "AgentVersion": agent_version,
        "ComputerName": socket.getfqdn(),
        "IPAddress": ip_address(),
        "InstanceId": instance_id,
        "PlatformName": release.get("NAME", platform.system()),
        "PlatformType": {"Linux": "Linux", "Darwin": "MacOS", "Windows": "Windows"}.get(
            platform.system(), platform.system()
        ),
        "PlatformVersion": release.get("VERSION_ID", platform.release()),
    }
