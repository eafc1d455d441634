"""How the agent names a failed dial, and that it dials for real on loopback."""

import asyncio
import errno
import socket

import pytest

from hatchway.agent.port import DialError, dial, dial_error_text
from hatchway.protocol.port import Destination

DEST = Destination("db.internal", 5432, remote=True)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "name not found"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connection refused by"),
        (TimeoutError(), "timed out after 15 s"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "network unreachable"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "network unreachable"),
    ],
)
def test_each_failure_gets_the_word_users_look_for(error, text):
    message = dial_error_text(error, DEST)
    assert text in message and "db.internal" in message


def test_a_refused_loopback_port_and_a_forbidden_address():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(DialError, match="connection refused"):
            asyncio.run(dial(Destination("127.0.0.1", port, remote=True)))
    with pytest.raises(
        DialError, match=r"Forwarding to IP address 169\.254\.169\.254 is forbidden"
    ):
        asyncio.run(dial(Destination("169.254.169.254", 80, remote=True)))
