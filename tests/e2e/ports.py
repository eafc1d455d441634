"""Loopback helpers for port-forwarding tests: origins, echo servers, and clients that
forward a port."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HATCHWAY = [sys.executable, "-m", "hatchway"]
OPENED = re.compile(r"Port (\d+) opened for session (\S+)\. Waiting for connections\.\.\.")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout=30.0):
    """Until 127.0.0.1:port accepts; fails early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"the client exited with {process.returncode}: {output}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


class HttpOrigin:
    """An HTTP server on loopback that answers GET / with ``body``."""

    def __init__(self, body: bytes, host: str = "127.0.0.1") -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.body = body
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpOrigin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def fetch_through(port: int, path: str = "/", host: str = "127.0.0.1") -> bytes:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.status == 200
            return response.read()
        finally:
            connection.close()


class EchoServer:
    """Sends back every byte it gets; after the client's EOF it closes its side too."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(65536):
                    self.request.sendall(data)
                self.request.shutdown(socket.SHUT_WR)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            request_queue_size = 128  # the default of 5 drops connections in a burst

        self.server = Server((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def echo_round_trip(port: int, payload: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``payload`` through the tunnel, half-close, and return all that comes back."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(1)))
        sender.start()
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        sender.join(60)
    return b"".join(chunks)


def hashed_echo_round_trip(
    port: int,
    mebibytes: int,
    host: str = "127.0.0.1",
    progress: Callable[[int], object] | None = None,
) -> tuple[str, str, int]:
    """Stream ``mebibytes`` MiB of random bytes through an echo tunnel without keeping
    them: returns the sha256 of what was sent, of what came back, and how much came back.
    ``progress`` is told how much has come back after each read."""
    import random

    sent, received = hashlib.sha256(), hashlib.sha256()
    count = 0
    rng = random.Random(13)
    with socket.create_connection((host, port), timeout=60) as sock:

        def send() -> None:
            for _ in range(mebibytes):
                block = rng.randbytes(1 << 20)
                sent.update(block)
                sock.sendall(block)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while chunk := sock.recv(1 << 20):
            received.update(chunk)
            count += len(chunk)
            if progress is not None:
                progress(count)
        sender.join(60)
    return sent.hexdigest(), received.hexdigest(), count


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Forwarder:
    """A running ``hatchway start-session`` for a port document; its output is collected
    by a thread so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.opened = threading.Event()
        self.port = 0
        self.session_id = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            match = OPENED.search(line)
            if match:
                self.port, self.session_id = int(match.group(1)), match.group(2)
                self.opened.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in: {self.output}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            # Ctrl-C reaches the whole process group, as from a terminal: the AWS CLI
            # ignores it and leaves it to its plugin.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=30)
        self.reader.join(10)
        return code


def start_session_command(
    target: str, parameters: str, document: str, extra: tuple[str, ...] = ()
) -> list[str]:
    return [
        *HATCHWAY,
        "start-session",
        "--target",
        target,
        "--document-name",
        document,
        "--parameters",
        parameters,
        *extra,
    ]


@contextmanager
def forwarding(
    env: dict[str, str],
    target: str,
    parameters: str,
    document: str = "AWS-StartPortForwardingSession",
    extra: tuple[str, ...] = (),
    command: list[str] | None = None,
) -> Iterator[Forwarder]:
    """A port forwarding client (``hatchway start-session`` unless ``command`` names
    another), once its listener is open."""
    process = subprocess.Popen(
        command or start_session_command(target, parameters, document, extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    forwarder = Forwarder(process)
    try:
        if not forwarder.opened.wait(60):
            forwarder.stop()
            raise AssertionError(f"no listener was opened: {forwarder.output}")
        yield forwarder
    finally:
        forwarder.stop()
