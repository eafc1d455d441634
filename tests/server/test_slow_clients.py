"""Connections that never finish their headers (slowloris) are closed at the header
deadline, one address cannot hold more than its share of them, and running out of file
descriptors is logged once and recovered from, while /healthz keeps answering."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.helpers import running_server

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow-1: a\r\n"


def slow_connection(url: str, source: str) -> socket.socket:
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    sock = socket.create_connection(address, timeout=60, source_address=(source, 0))
    sock.sendall(PARTIAL)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Waits (up to the socket's timeout) for the server to close; True if it did."""
    try:
        while chunk := sock.recv(4096):
            assert not chunk.startswith(b"HTTP/1.1 200"), "a partial request was answered"
        return True
    except ConnectionResetError:
        return True  # aborted: the server freed its descriptor at once
    except TimeoutError:
        return False


def healthz(url: str) -> int:
    with urllib.request.urlopen(url + "/healthz", timeout=30) as response:
        return response.status


def idle_connection(url: str, source: str) -> socket.socket:
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    return socket.create_connection(address, timeout=60, source_address=(source, 0))


def test_slowloris_connections_are_closed_at_the_header_deadline(tmp_path):
    with running_server(tmp_path / "s", header_timeout=3.0, pending_per_address=1000) as server:
        held = [slow_connection(server.url, "127.0.0.2") for _ in range(280)]
        held += [idle_connection(server.url, "127.0.0.2") for _ in range(20)]  # say nothing
        try:
            assert healthz(server.url) == 200  # from another address, while they are held
            for sock in held:  # dribbling more header lines does not extend the deadline
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow-2: b\r\n")
            assert all(closed_by_server(sock) for sock in held)
            assert healthz(server.url) == 200
        finally:
            for sock in held:
                sock.close()


def test_one_address_holds_only_so_many_pending_connections(tmp_path):
    with running_server(tmp_path / "s", header_timeout=60.0, pending_per_address=5) as server:
        held = [slow_connection(server.url, "127.0.0.3") for _ in range(5)]
        extra = slow_connection(server.url, "127.0.0.3")
        try:
            assert closed_by_server(extra)
            assert healthz(server.url) == 200  # other addresses are not affected
            # A connection that finishes its headers no longer counts: room for one more.
            held[0].sendall(b"\r\n")
            assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
            admitted = slow_connection(server.url, "127.0.0.3")
            admitted.sendall(b"\r\n")
            assert admitted.recv(4096).startswith(b"HTTP/1.1 200")
            admitted.close()
        finally:
            extra.close()
            for sock in held:
                sock.close()


def _few_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_NOFILE as on Linux")
def test_out_of_descriptors_is_logged_once_and_recovered_from(tmp_path):
    home = tmp_path / "home"
    command = [sys.executable, "-m", "hatchway", "server", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--home", str(home), "--header-timeout", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_few_descriptors,
    )
    held: list[socket.socket] = []
    try:
        url = process.stdout.readline().split()[4]
        # More than the server has descriptors for: it runs out, then frees them at the
        # header deadline and takes the rest from the backlog.
        for _ in range(150):
            held.append(slow_connection(url, "127.0.0.4"))
        assert all(closed_by_server(sock) for sock in held)
        assert healthz(url) == 200
    finally:
        for sock in held:
            sock.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    log = (home / "logs" / "server.log").read_text()
    assert log.count("out of file descriptors: new connections wait") == 1, log
    assert "Traceback" not in stderr and "out of system resource" not in stderr, stderr[-3000:]


def test_a_trusted_proxy_is_not_capped_but_still_has_the_deadline(tmp_path):
    from hatchway.server.forwarded import parse_trusted_proxies

    proxy = parse_trusted_proxies("127.0.0.5")
    with running_server(
        tmp_path / "s", header_timeout=3.0, pending_per_address=2, trusted_proxies=proxy
    ) as server:
        held = [slow_connection(server.url, "127.0.0.5") for _ in range(5)]
        try:
            last = held[-1]
            last.sendall(b"\r\n")  # the fifth, past the cap, was admitted
            assert last.recv(4096).startswith(b"HTTP/1.1 200")
            assert all(closed_by_server(sock) for sock in held[:-1])
        finally:
            for sock in held:
                sock.close()
