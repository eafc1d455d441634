"""Small servers on 127.0.0.1 for doctor's failure matrix: a TLS server that only does
handshakes (with any certificate chain, versions and ciphers), and an HTTP server that
gives one canned answer to everything. Each runs in a daemon thread until closed."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import warnings
from pathlib import Path


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with contextlib.suppress(OSError, ssl.SSLError), conn:
                self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> _Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TlsServer(_Listener):
    """Handshakes with ``cert_chain`` (leaf first, then whatever the file holds, in the
    file's order), then answers any request with 200."""

    def __init__(
        self,
        cert_chain: Path,
        key: Path,
        *,
        ciphers: str | None = None,
        versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if versions is not None:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
                context.minimum_version, context.maximum_version = versions
            if ciphers is not None:
                context.maximum_version = ssl.TLSVersion.TLSv1_2
                context.set_ciphers(ciphers)
        context.load_cert_chain(cert_chain, key)
        self.context = context
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        with self.context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class CannedHttp(_Listener):
    """Answers every request with ``response`` (the whole HTTP response, as bytes)."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        super().__init__()

    @classmethod
    def answering(cls, status: str, body: bytes, **headers: str) -> CannedHttp:
        """An HTTP/1.1 ``status`` answer with ``body``, its length and ``Connection:
        close``; ``headers`` with underscores for dashes (``Content_Type=…``)."""
        lines = [f"HTTP/1.1 {status}"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        return cls("\r\n".join(lines).encode() + body)

    def handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        conn.sendall(self.response)
