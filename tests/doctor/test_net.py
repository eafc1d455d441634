"""doctor's one-request HTTP reader, over a real socket pair."""

from __future__ import annotations

import socket

import pytest

from hatchway.doctor.net import NetError, read_response


def answer(data: bytes) -> socket.socket:
    ours, theirs = socket.socketpair()
    ours.settimeout(2)
    theirs.sendall(data)
    theirs.close()
    return ours


def test_a_chunked_body() -> None:
    sock = answer(
        b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"
    )
    with sock:
        response = read_response(sock)
    assert (response.status, response.reason, response.body) == (
        502,
        "Bad Gateway",
        b"hello, world",
    )


def test_a_body_until_the_connection_closes() -> None:
    with answer(b"HTTP/1.0 200 OK\r\nServer: test\r\n\r\nall of it") as sock:
        response = read_response(sock)
    assert response.headers["server"] == "test"
    assert response.body == b"all of it"


@pytest.mark.parametrize(
    "data",
    [b"", b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Le"],
)
def test_what_is_not_an_http_answer(data: bytes) -> None:
    with answer(data) as sock, pytest.raises(NetError) as failure:
        read_response(sock)
    assert failure.value.cause == "upstream.error"
