"""The little I/O doctor does, with blocking sockets and a timeout on every wait: DNS,
TCP, a CONNECT tunnel, TLS, and one HTTP/1.1 request per connection. Doctor needs to see
each layer on its own, which a full HTTP client hides."""

from __future__ import annotations

import _ssl
import errno
import socket
import ssl
import threading
from dataclasses import dataclass, field

from cryptography import x509

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
_ENCODING_DER = getattr(ssl, "ENCODING_DER", None) or getattr(_ssl, "ENCODING_DER", 2)


class NetError(Exception):
    """A failure at one layer, with doctor's cause and the evidence."""

    def __init__(self, cause: str, evidence: str) -> None:
        super().__init__(evidence)
        self.cause = cause
        self.evidence = evidence


def resolve(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    """getaddrinfo with a timeout (it has none of its own: it runs in a daemon thread)."""
    outcome: list[object] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise NetError("dns.timeout", f"no answer for {host!r} within {timeout:g} s")
    result = outcome[0]
    if isinstance(result, socket.gaierror):
        if result.errno in (socket.EAI_AGAIN,):
            raise NetError("dns.timeout", f"looking up {host!r}: {result.strerror}")
        raise NetError("dns.not_found", f"{host!r} does not resolve: {result.strerror}")
    if isinstance(result, BaseException):
        raise NetError("dns.not_found", f"{host!r} cannot be looked up: {result}")
    assert isinstance(result, list)
    addresses: list[tuple[str, int]] = []
    for _family, _type, _proto, _name, sockaddr in result:
        address = (str(sockaddr[0]), int(sockaddr[1]))
        if address not in addresses:
            addresses.append(address)
    return addresses


def connect(addresses: list[tuple[str, int]], timeout: float) -> socket.socket:
    """Connect to the first address that accepts; the last failure explains them all."""
    failure = NetError("tcp.unreachable", "no address to connect to")
    for host, port in addresses:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            failure = NetError("tcp.timeout", f"no answer from {where} within {timeout:g} s")
        except ConnectionRefusedError:
            failure = NetError("tcp.refused", f"{where} refused the connection")
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
                failure = NetError("tcp.unreachable", f"{where}: {exc.strerror}")
            else:
                failure = NetError("tcp.unreachable", f"{where}: {exc}")
        else:
            sock.settimeout(timeout)
            return sock
    raise failure


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""

    @property
    def status_line(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip()

    def body_text(self, limit: int = 300) -> str:
        text = self.body[:limit].decode("utf-8", "replace").strip()
        return text + ("…" if len(self.body) > limit else "")


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise NetError("upstream.error", "the response's headers are too long")
        chunk = sock.recv(65536)
        if not chunk:
            if not data:
                raise NetError("upstream.error", "the connection closed without a response")
            raise NetError("upstream.error", "the connection closed inside the headers")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock: socket.socket, *, head_only: bool = False) -> Response:
    """Read one response. ``head_only`` stops after the headers (CONNECT, 101)."""
    try:
        head, rest = _read_head(sock)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise NetError("upstream.error", f"not an HTTP response: {lines[0][:80]!r}")
        response = Response(int(parts[1]), parts[2] if len(parts) > 2 else "")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            response.headers[name.strip().lower()] = value.strip()
        if head_only or response.status in (101, 204, 304):
            response.body = rest  # whatever came with the head; the caller may read on
            return response
        response.body = _read_body(sock, response.headers, rest)
        return response
    except TimeoutError:
        raise NetError("upstream.error", "no complete response within the timeout") from None
    except ssl.SSLError as exc:
        raise NetError("upstream.error", f"TLS failed while reading: {exc.reason}") from None
    except OSError as exc:
        raise NetError("upstream.error", f"the connection failed while reading: {exc}") from None


def _read_body(sock: socket.socket, headers: dict[str, str], data: bytes) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _read_chunked(sock, data)
    length = headers.get("content-length")
    want = int(length) if length and length.isdigit() else MAX_BODY
    while len(data) < min(want, MAX_BODY):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[: min(want, MAX_BODY)]


def _read_chunked(sock: socket.socket, data: bytes) -> bytes:
    body = b""
    while len(body) < MAX_BODY:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return body
            data += chunk
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return body
        while len(data) < size + 2:
            chunk = sock.recv(65536)
            if not chunk:
                return body + data[:size]
            data += chunk
        body += data[:size]
        data = data[size + 2 :]
    return body


def send_request(
    sock: socket.socket,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    *,
    head_only: bool = False,
) -> Response:
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    except OSError as exc:
        raise NetError("upstream.error", f"the connection failed while sending: {exc}") from None
    return read_response(sock, head_only=head_only)


def unverified_chain(sock: ssl.SSLSocket) -> list[x509.Certificate]:
    """The certificates as the server sent them, in its order (Python 3.13 has a public
    method for this; 3.11 and 3.12 have it on the underlying object)."""
    getter = getattr(sock, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        der = sock.getpeercert(binary_form=True)
        return [x509.load_der_x509_certificate(der)] if der else []
    chain = []
    for cert in getter() or []:
        der = cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER)
        chain.append(x509.load_der_x509_certificate(der))
    return chain
