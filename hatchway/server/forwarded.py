"""Which ``X-Forwarded-*`` headers to believe: only those from proxies the operator names.

Anyone can send ``X-Forwarded-Proto: https`` or ``X-Forwarded-For: 10.0.0.1``. Believed
from any peer, they would let a caller pick the scheme and host of the StreamUrls we hand
out, pass the console's Origin check with a host of their choosing, or put their sign-in
guesses on someone else's throttle budget. So they count only when the TCP peer is in
``--trusted-proxies`` (none by default: then the request's own scheme, Host and peer
address are used). Pure functions: addresses and headers in, decisions out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.168.1.5, ::1"`` -> networks; a bare address is a /32 (or /128).
    Raises ValueError naming the entry that is not an address or network."""
    networks: list[Network] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def is_trusted(peer: str | None, proxies: Iterable[Network]) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False  # a Unix socket or something else that is not an IP address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


def forwarded(
    headers: Mapping[str, str], name: str, peer: str | None, proxies: Sequence[Network]
) -> str | None:
    """The first value of the ``name`` header if ``peer`` is a trusted proxy, else None."""
    if not proxies or not is_trusted(peer, proxies):
        return None
    value = headers.get(name)
    if value is None:
        return None
    return value.split(",")[0].strip()


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    """The address of whoever sent the request: the peer, or, through trusted proxies, the
    rightmost X-Forwarded-For entry that is not itself a trusted proxy. Entries to its
    left were written by the client and prove nothing."""
    address = peer or ""
    if not forwarded_for or not is_trusted(address, proxies):
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if not hop:
            break
        address = hop
        if not is_trusted(hop, proxies):
            break
    return address
