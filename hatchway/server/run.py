"""Running the server: listen, serve until stopped, close cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

from .app import STATE, create_app
from .config import ServerConfig
from .listener import GuardedTCPSite


def bind_any_port(host: str) -> socket.socket:
    """A listening socket on a port the system chooses."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, 0), family=family)


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key or config.tls_cert))
    return context


async def serve(
    config: ServerConfig,
    on_ready: Callable[[web.Application, str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    # With --listen HOST:0, bind before the app starts: its config, and so config.peer_url
    # (which a node of a cluster registers as it starts), then hold the real port, not 0.
    listening = bind_any_port(config.host) if config.port == 0 else None
    if listening is not None:
        config = dataclasses.replace(config, port=listening.getsockname()[1])
    app = create_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=config.keepalive_timeout
    )
    try:
        await runner.setup()
    except BaseException:
        if listening is not None:
            listening.close()
        raise
    site = GuardedTCPSite(
        runner,
        config.host,
        config.port,
        ssl_context=tls_context(config),
        header_timeout=config.header_timeout,
        pending_per_address=config.pending_per_address,
        trusted_proxies=config.trusted_proxies,
        sock=listening,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # a taken port: close what startup opened, then say so
        if listening is not None:
            listening.close()
        raise
    scheme = "https" if config.tls else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    port = runner.addresses[0][1]  # the real one when --listen asked for port 0
    if on_ready is not None:
        on_ready(app, f"{scheme}://{host}:{port}")
    # Without a stop event from the caller, SIGINT and SIGTERM stop the server.
    signals = (signal.SIGINT, signal.SIGTERM) if stop is None else ()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def describe_start(app: web.Application, url: str) -> str:
    state = app[STATE]
    lines = [f"Hatchway server listening on {url} (region {state.region})"]
    created = state.created_credentials
    credentials = created or str(state.config.home / "credentials")
    lines.append(
        ("Created the admin credentials in " if created else "Admin credentials: ") + credentials
    )
    lines.append(
        f"  export AWS_SHARED_CREDENTIALS_FILE={credentials} AWS_ENDPOINT_URL={url} "
        f"AWS_DEFAULT_REGION={state.region}"
    )
    return "\n".join(lines)
