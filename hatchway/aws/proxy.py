"""Which proxy a connection goes through, as AWS SDKs and Go's ProxyFromEnvironment pick
it: HTTPS_PROXY / HTTP_PROXY (and WSS_PROXY / WS_PROXY), minus NO_PROXY; loopback never.

Shared by the client and the agent: aiohttp's trust_env looks up only WSS_PROXY for
wss:// URLs, which would leave WebSockets unproxied where HTTPS_PROXY is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import urllib.request
from collections.abc import Mapping

import aiohttp
from yarl import URL


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(
    url: URL, environ: Mapping[str, str] | None = None
) -> tuple[URL | None, dict[str, str]]:
    """The proxy for a ws/wss URL, the way Go's ProxyFromEnvironment finds it.

    aiohttp's trust_env looks up WSS_PROXY for wss:// and never HTTPS_PROXY, so we resolve
    it ourselves: WSS_PROXY or HTTPS_PROXY for wss, WS_PROXY or HTTP_PROXY for ws, minus
    NO_PROXY; loopback is never proxied (data-channel.md §1.3). Credentials in the proxy URL
    become a Proxy-Authorization header.
    """
    host = url.host or ""
    if not host or is_loopback(host):
        return None, {}
    proxies = (
        urllib.request.getproxies_environment()
        if environ is None
        else {
            key.lower()[: -len("_proxy")]: value
            for key, value in environ.items()
            if key.lower().endswith("_proxy") and value
        }
    )
    bypass_list = proxies.get("no", "")
    if _bypassed(host, bypass_list):
        return None, {}
    fallback = {"wss": "https", "ws": "http"}.get(url.scheme, url.scheme)
    value = proxies.get(url.scheme) or proxies.get(fallback)
    if not value:
        return None, {}
    proxy = URL(value if "://" in value else f"http://{value}")
    if not proxy.user:
        return proxy, {}
    credentials = aiohttp.encode_basic_auth(proxy.user, proxy.password or "")
    return proxy.with_user(None), {"Proxy-Authorization": credentials}


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as Go reads it: "*", host names covering their subdomains (a leading dot
    optional, a port ignored), and IP addresses or CIDR blocks."""
    host = host.lower().strip("[]")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if not entry:
            continue
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        name = entry.lstrip(".")
        if name.count(":") == 1:
            name = name.rsplit(":", 1)[0]
        if host == name.strip("[]") or host.endswith("." + name):
            return True
    return False
