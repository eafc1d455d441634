"""The failure matrix: one real failure per cause, built on 127.0.0.1, and doctor must name
exactly that cause (and nothing else fails or warns). Real servers, certificates, proxies
and agents; no mocks."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hatchway.doctor.checks import Credentials, run_checks, utc_now
from hatchway.doctor.results import Result, Status
from tests.certs import PrivateCA, self_signed
from tests.doctor.conftest import World
from tests.doctor.servers import CannedHttp, TlsServer
from tests.proxy import ConnectProxy
from tests.reverse_proxy import WebSocketMode, reverse_proxy


def problems(results: list[Result]) -> dict[str, tuple[str, str | None]]:
    return {
        r.id: (r.status.value, r.cause) for r in results if r.status in (Status.FAIL, Status.WARN)
    }


# --- the network ---------------------------------------------------------------------------


def test_a_name_that_does_not_exist(world: World) -> None:
    results = run_checks(world.settings(endpoint_url="http://hatchway.invalid:8080"))
    assert problems(results) == {"dns": ("fail", "dns.not_found")}
    assert all(
        r.status is Status.SKIP
        for r in results
        if r.id not in ("config.endpoint", "config.credentials", "dns")
    )


def test_a_closed_port(world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = run_checks(world.settings(endpoint_url=f"http://127.0.0.1:{port}"))
    assert problems(results) == {"tcp": ("fail", "tcp.refused")}


def test_a_port_that_never_answers(world: World) -> None:
    # A listener with a full backlog: the kernel drops further SYNs, as a firewall would.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        results = run_checks(world.settings(endpoint_url=f"http://127.0.0.1:{port}", timeout=0.5))
    assert problems(results) == {"tcp": ("fail", "tcp.timeout")}


def test_a_gateway_that_answers_502(world: World) -> None:
    body = b"<html>502 Bad Gateway</html>"
    with CannedHttp.answering("502 Bad Gateway", body, Server="nginx") as gateway:
        results = run_checks(world.settings(endpoint_url=f"http://127.0.0.1:{gateway.port}"))
    assert problems(results) == {"http.endpoint": ("fail", "upstream.error")}
    evidence = {r.id: r.evidence for r in results}["http.endpoint"]
    assert "502" in evidence and "nginx" in evidence


# --- TLS -----------------------------------------------------------------------------------


def _leaf_cases(world: World) -> dict[str, tuple[Path, Path, Path | None]]:
    """case -> (certificate chain file, key, CA bundle)."""
    now = dt.datetime.now(dt.UTC)
    root, pki = world.root, world.pki
    names = ["localhost", "127.0.0.1"]
    other = PrivateCA(pki / "other", "Somebody Else's CA")
    intermediate = root.intermediate("Doctor Issuing CA")
    cases = {
        "tls.hostname_mismatch": root.issue(["wrong.example"], stem="wrong-name"),
        "tls.expired": root.issue(
            names,
            stem="expired",
            not_before=now - dt.timedelta(days=10),
            not_after=now - dt.timedelta(days=1),
        ),
        "tls.not_yet_valid": root.issue(
            names,
            stem="future",
            not_before=now + dt.timedelta(days=1),
            not_after=now + dt.timedelta(days=10),
        ),
        "tls.self_signed": self_signed(pki / "self", names),
        "tls.untrusted_issuer": other.issue(names, stem="unknown-ca"),
        "tls.incomplete_chain": intermediate.issue(
            names, stem="leaf-only", ca_issuers_url="http://pki.example/issuing-ca.crt"
        ),
    }
    return {cause: (issued.cert, issued.key, root.path) for cause, issued in cases.items()}


TLS_CASES = [
    "tls.hostname_mismatch",
    "tls.expired",
    "tls.not_yet_valid",
    "tls.self_signed",
    "tls.untrusted_issuer",
    "tls.incomplete_chain",
]


@pytest.mark.parametrize("cause", TLS_CASES)
def test_certificate_problems(world: World, cause: str) -> None:
    chain, key, bundle = _leaf_cases(world)[cause]
    with TlsServer(chain, key) as server:
        results = run_checks(
            world.settings(endpoint_url=f"https://localhost:{server.port}", ca_bundle=str(bundle))
        )
    assert problems(results) == {"tls.certificate": ("fail", cause)}


def test_an_unknown_root_sent_along_with_the_leaf(world: World) -> None:
    other = PrivateCA(world.pki / "other-root", "Unlisted Root CA")
    issued = other.issue(["localhost"], stem="with-root", chain=(other.cert,))
    with TlsServer(issued.cert, issued.key) as server:
        results = run_checks(
            world.settings(
                endpoint_url=f"https://localhost:{server.port}", ca_bundle=str(world.root.path)
            )
        )
    assert problems(results) == {"tls.certificate": ("fail", "tls.untrusted_issuer")}


def test_no_shared_cipher(world: World) -> None:
    issued = world.root.issue(["localhost"], stem="sha1-only")
    # Only a SHA-1 suite on TLS 1.2, which Python's default client context leaves out.
    with TlsServer(issued.cert, issued.key, ciphers="ECDHE-ECDSA-AES128-SHA") as server:
        results = run_checks(
            world.settings(
                endpoint_url=f"https://localhost:{server.port}", ca_bundle=str(world.root.path)
            )
        )
    assert problems(results) == {"tls.handshake": ("fail", "tls.no_shared_cipher")}
    assert "ECDHE-ECDSA-AES128-SHA" in {r.id: r.evidence for r in results}["tls.handshake"]


def test_an_old_protocol_version(world: World) -> None:
    issued = world.root.issue(["localhost"], stem="tls11")
    versions = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    with TlsServer(issued.cert, issued.key, versions=versions) as server:
        results = run_checks(
            world.settings(
                endpoint_url=f"https://localhost:{server.port}", ca_bundle=str(world.root.path)
            )
        )
    assert problems(results) == {"tls.handshake": ("fail", "tls.protocol_version")}


def test_plain_http_on_an_https_url(world: World) -> None:
    port = world.server.url.rsplit(":", 1)[1]
    results = run_checks(world.settings(endpoint_url=f"https://127.0.0.1:{port}"))
    assert problems(results) == {"tls.handshake": ("fail", "tls.protocol_version")}


def test_a_chain_out_of_order_is_a_warning_and_the_rest_passes(world: World) -> None:
    port = world.tls_server.url.rsplit(":", 1)[1]
    tls_keys = world.tls_server.admin_keys()
    results = run_checks(
        world.settings(
            endpoint_url=f"https://localhost:{port}",
            ca_bundle=str(world.root.path),
            credentials=Credentials(*tls_keys),
        )
    )
    assert problems(results) == {"tls.chain": ("warn", "tls.chain_out_of_order")}
    assert {r.id: r.status for r in results}["websocket.upgrade"] is Status.PASS


# --- proxies -------------------------------------------------------------------------------


@pytest.fixture
def proxy_factory(world: World) -> Iterator[Callable[..., ConnectProxy]]:
    started: list[ConnectProxy] = []

    def start(upstream: int, **options: Any) -> ConnectProxy:
        proxy = ConnectProxy(upstream, **options)
        world.loop.run(proxy.start())
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        world.loop.run(proxy.close())


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_proxy_that_refuses_connect(world: World, proxy_factory: Any) -> None:
    proxy = proxy_factory(_port(world.tls_server.url), refuse=True)
    results = run_checks(
        world.settings(
            endpoint_url="https://hatchway.example:443",
            proxy_url=proxy.url,
            ca_bundle=str(world.root.path),
        )
    )
    assert problems(results) == {"proxy.connect": ("fail", "proxy.connect_refused")}
    assert proxy.targets == ["hatchway.example:443"]


def test_a_proxy_that_wants_credentials(world: World, proxy_factory: Any) -> None:
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    proxy = proxy_factory(_port(world.tls_server.url), require_auth=expected)
    settings = world.settings(
        endpoint_url="https://localhost:443",
        proxy_url=proxy.url,
        ca_bundle=str(world.root.path),
        credentials=Credentials(*world.tls_server.admin_keys()),
    )
    results = run_checks(settings)
    assert problems(results) == {"proxy.connect": ("fail", "proxy.auth_required")}
    # With the credentials in the proxy URL, everything passes but the chain order.
    with_auth = proxy.url.replace("http://", "http://alice:s3cret@")
    results = run_checks(replace(settings, proxy_url=with_auth))
    assert problems(results) == {"tls.chain": ("warn", "tls.chain_out_of_order")}
    assert all("s3cret" not in r.evidence for r in results)


def test_a_proxy_that_strips_upgrade(world: World, proxy_factory: Any) -> None:
    proxy = proxy_factory(_port(world.server.url), strip_upgrade=True)
    results = run_checks(
        world.settings(endpoint_url="http://hatchway.example:8080", proxy_url=proxy.url)
    )
    assert problems(results) == {"websocket.upgrade": ("fail", "proxy.websocket_blocked")}
    assert {r.id: r.status for r in results}["auth.signature"] is Status.PASS


def test_a_reverse_proxy_that_strips_upgrade(world: World, proxy_factory: Any) -> None:
    front = proxy_factory(_port(world.server.url), strip_upgrade=True)
    results = run_checks(world.settings(endpoint_url=front.url))
    assert problems(results) == {"websocket.upgrade": ("fail", "websocket.upgrade_failed")}


def test_a_reverse_proxy_that_refuses_upgrade(world: World) -> None:
    with reverse_proxy(world.server.url, mode=WebSocketMode.REFUSE) as (front, _):
        results = run_checks(world.settings(endpoint_url=front.url))
    assert problems(results) == {"websocket.upgrade": ("fail", "websocket.upgrade_failed")}
    upgrade = next(r for r in results if r.id == "websocket.upgrade")
    assert "403" in upgrade.evidence


# --- credentials and SigV4 ------------------------------------------------------------------


def test_no_credentials(world: World) -> None:
    results = run_checks(world.settings(credentials=None))
    assert problems(results) == {"config.credentials": ("fail", "auth.no_credentials")}
    statuses = {r.id: r.status for r in results}
    assert statuses["websocket.upgrade"] is Status.PASS  # that branch does not need them
    assert statuses["auth.signature"] is Status.SKIP


def test_an_unknown_access_key(world: World) -> None:
    creds = Credentials("AKIA" + "Z" * 16, "x" * 40)
    results = run_checks(world.settings(credentials=creds))
    assert problems(results) == {"auth.signature": ("fail", "auth.unknown_access_key")}


def test_a_wrong_secret(world: World) -> None:
    creds = replace(world.admin, secret_key=world.admin.secret_key[::-1])
    results = run_checks(world.settings(credentials=creds))
    assert problems(results) == {"auth.signature": ("fail", "auth.signature_mismatch")}
    assert all(world.admin.secret_key not in r.evidence for r in results)


def test_a_proxy_that_rewrites_the_host_header(world: World) -> None:
    """The Host header doctor sent is not the one the server saw: every signature then
    fails, and doctor says why before it says that."""
    with reverse_proxy(world.server.url, keep_host=False) as (proxy, _):
        results = run_checks(world.settings(endpoint_url=proxy.url))
    assert problems(results) == {
        "http.endpoint": ("warn", None),
        "auth.signature": ("fail", "auth.signature_mismatch"),
    }
    http = next(r for r in results if r.id == "http.endpoint")
    assert "the server saw Host: 127.0.0.1:" in http.evidence and "proxy_set_header" in (
        http.fix or ""
    )


def test_a_skewed_clock(world: World) -> None:
    def slow() -> dt.datetime:
        return utc_now() - dt.timedelta(minutes=20)

    results = run_checks(world.settings(clock=slow))
    assert problems(results) == {"auth.signature": ("fail", "auth.clock_skew")}
    evidence = {r.id: r.evidence for r in results}["auth.signature"]
    assert "20 min behind" in evidence


def test_a_wrong_region(world: World) -> None:
    results = run_checks(world.settings(region="eu-west-1"))
    assert problems(results) == {"auth.signature": ("fail", "auth.wrong_scope")}


def test_a_user_without_permission(world: World) -> None:
    results = run_checks(world.settings(credentials=world.nobody, target=world.online))
    assert problems(results) == {"target.registered": ("fail", "auth.access_denied")}


# --- the target ----------------------------------------------------------------------------


def test_a_target_that_is_not_registered(world: World) -> None:
    results = run_checks(world.settings(target="mi-0000000000000dead"))
    assert problems(results) == {"target.registered": ("fail", "target.not_registered")}


def test_a_target_that_is_offline(world: World) -> None:
    results = run_checks(world.settings(target=world.offline))
    assert problems(results) == {"target.online": ("fail", "target.offline")}


def test_everything_passes_for_an_online_target(world: World) -> None:
    results = run_checks(world.settings(target=world.online))
    # The test agent logs only to stderr (`hatchway agent run` writes the log files).
    assert problems(results) == {"agent.logs": ("warn", None)}
    assert [r.id for r in results] == [
        "config.endpoint",
        "config.credentials",
        "dns",
        "tcp",
        "http.endpoint",
        "auth.signature",
        "websocket.upgrade",
        "target.registered",
        "target.online",
        "agent.logs",
    ]


# --- StreamUrls on another host -------------------------------------------------------------


def test_stream_urls_on_another_host_are_checked_too(world: World) -> None:
    port = _port(world.server.url)
    try:
        world.server.set_config(public_url=f"http://localhost:{port}")
        results = run_checks(world.settings())
        assert problems(results) == {}
        by_id = {r.id: r for r in results}
        assert "ws://localhost:" in by_id["stream.host"].evidence
        assert by_id["stream.dns"].status is Status.PASS
        assert f"localhost:{port}/v1/data-channel/" in by_id["websocket.upgrade"].evidence

        world.server.set_config(public_url="http://hatchway.invalid:8080")
        results = run_checks(world.settings())
        assert problems(results) == {"stream.dns": ("fail", "dns.not_found")}
        assert {r.id: r.status for r in results}["websocket.upgrade"] is Status.SKIP
    finally:
        world.server.set_config(public_url=None)


def test_a_bare_403_from_something_in_front(world: World) -> None:
    # As in support threads: "Server authentication failed: <UnauthorizedRequest>…".
    body = b'<UnauthorizedRequest xmlns=""><message>Forbidden.</message></UnauthorizedRequest>'
    answer = CannedHttp.answering("403 Forbidden", body, Content_Type="application/octet-stream")
    with answer as front:
        results = run_checks(world.settings(endpoint_url=f"http://127.0.0.1:{front.port}"))
    assert problems(results) == {"http.endpoint": ("fail", "endpoint.not_hatchway")}
    assert "Forbidden" in {r.id: r.evidence for r in results}["http.endpoint"]


def test_a_plain_web_server_is_not_hatchway_and_no_load_balancer_is_blamed(world: World) -> None:
    with plain_web_server() as url:
        results = run_checks(world.settings(endpoint_url=url))
    assert problems(results) == {"http.endpoint": ("fail", "endpoint.not_hatchway")}
    found = next(r for r in results if r.id == "http.endpoint")
    assert "HTTP 404" in found.evidence and "is not Hatchway" in found.evidence
    assert all("load balancer" not in f"{r.evidence} {r.fix}" for r in results)
    statuses = {r.id: r.status for r in results}
    assert statuses["auth.signature"] is statuses["websocket.upgrade"] is Status.SKIP


@contextmanager
def plain_web_server() -> Iterator[str]:
    """Python's own http.server on loopback, as someone might have running on the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
