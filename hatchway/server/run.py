"""Running the server: listen, serve until stopped, close cleanly."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from .app import STATE, create_app
from .cluster.registry import NodeRegistry
from .config import ServerConfig
from .listener import GuardedTCPSite


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
    app = create_app(config)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=config.keepalive_timeout
    )
    await runner.setup()
    site = GuardedTCPSite(
        runner,
        config.host,
        config.port,
        ssl_context=tls_context(config),
        header_timeout=config.header_timeout,
        pending_per_address=config.pending_per_address,
        trusted_proxies=config.trusted_proxies,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()  # a taken port: close what startup opened, then say so
        raise
    scheme = "https" if config.tls else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    port = runner.addresses[0][1]  # the real one when --listen asked for port 0
    # Where the other nodes of a cluster reach this one.
    await app[STATE].services.get(NodeRegistry).advertise(f"{scheme}://{host}:{port}")
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
