"""Request bodies are read whole before their signature is checked, however they arrive."""

import http.client
import json
import socket
import threading
from urllib.parse import urlsplit

from hatchway.agent.identity import Identity
from hatchway.agent.signing import signed_headers

TARGET = "AmazonSSM.DescribeSessions"


def connect(server) -> socket.socket:
    parts = urlsplit(server.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def head(server, headers: dict[str, str]) -> bytes:
    lines = ["POST / HTTP/1.1", f"Host: {urlsplit(server.url).netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return answer.status, json.loads(answer.read())


def test_a_signed_body_sent_in_two_pieces_is_read_whole(server):
    # Whitespace keeps the JSON valid while making the body larger than one socket read.
    body = b'{"State": "Active"' + b" " * (900 * 1024) + b"}"
    key_id, secret = server.admin_keys()
    identity = Identity("admin", server.url, server.region, key_id, secret)
    headers = signed_headers(
        identity,
        "POST",
        server.url + "/",
        "ssm",
        body,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET},
    )
    headers["Content-Length"] = str(len(body))
    with connect(server) as sock:
        # sendall returns once the kernel has taken the first piece: the server sees the
        # request start before the rest of its body exists.
        sock.sendall(head(server, headers) + body[:1000])
        sock.sendall(body[1000 : len(body) // 2])
        sock.sendall(body[len(body) // 2 :])
        status, answer = response(sock)
    assert status == 200, answer
    assert answer == {"Sessions": []}


def test_a_chunked_body_over_the_limit_is_413(server):
    chunk = b"x" * (64 * 1024)
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": TARGET,
        "Transfer-Encoding": "chunked",
    }
    with connect(server) as sock:
        sock.sendall(head(server, headers))

        def send_ten_megabytes() -> None:
            try:
                for _ in range(160):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may stop reading once it has answered

        sender = threading.Thread(target=send_ten_megabytes)
        sender.start()
        try:
            status, answer = response(sock)
        finally:
            sock.shutdown(socket.SHUT_RDWR)
            sender.join(30)
    assert status == 413
    assert answer["__type"] == "RequestEntityTooLargeException"
    assert answer["message"] == "The request body is larger than 1048576 bytes"


def test_a_body_over_the_limit_with_its_length_is_413(server):
    body = b" " * (1024 * 1024 + 1)
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": TARGET,
        "Content-Length": str(len(body)),
    }
    with connect(server) as sock:
        sock.sendall(head(server, headers))
        status, answer = response(sock)
    assert status == 413
    assert answer["__type"] == "RequestEntityTooLargeException"


def test_a_body_that_stops_arriving_gets_408(tmp_path):
    from tests.helpers import running_server

    with running_server(tmp_path / "s", body_timeout=1.0) as server:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": TARGET,
            "Content-Length": "100",
        }
        with connect(server) as sock:
            sock.sendall(head(server, headers) + b'{"State": ')  # and nothing more
            status, answer = response(sock)
    assert status == 408
    assert answer == {
        "__type": "RequestTimeoutException",
        "message": "The request body did not arrive within 1 seconds",
    }
