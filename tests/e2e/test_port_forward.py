"""`hatchway start-session` port forwarding against a real server and agent."""

import json
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.e2e.ports import (
    EchoServer,
    HttpOrigin,
    digest,
    echo_round_trip,
    forwarding,
    free_port,
)

AWS = str(Path(sys.executable).parent / "aws")


def test_http_through_the_tunnel(stack, client_env):
    _, agent = stack
    body = os.urandom(4 << 20)
    with (
        HttpOrigin(body) as origin,
        forwarding(
            client_env, agent.instance_id, f"portNumber={origin.port},localPortNumber=0"
        ) as tunnel,
    ):
        for _ in range(3):
            assert digest(HttpOrigin.fetch_through(tunnel.port)) == digest(body)
        code = tunnel.stop()
    assert code == 0, tunnel.output
    assert "Terminate signal received, exiting." in tunnel.output
    assert f"Exiting session with sessionId: {tunnel.session_id}." in tunnel.output


def test_fifty_parallel_connections_keep_their_bytes(stack, client_env):
    _, agent = stack
    payloads = [os.urandom(200_000 + 997 * n) for n in range(50)]
    with (
        EchoServer() as echo,
        forwarding(
            client_env, agent.instance_id, f"portNumber={echo.port},localPortNumber=0"
        ) as tunnel,
    ):
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda p: echo_round_trip(tunnel.port, p), payloads))
    assert [digest(r) for r in results] == [digest(p) for p in payloads]


def test_remote_host_forwarding(stack, client_env):
    _, agent = stack
    body = os.urandom(1 << 20)
    with (
        HttpOrigin(body, host="127.0.0.2") as origin,
        forwarding(
            client_env,
            agent.instance_id,
            f"host=127.0.0.2,portNumber={origin.port},localPortNumber=0",
            document="AWS-StartPortForwardingSessionToRemoteHost",
        ) as tunnel,
    ):
        assert digest(HttpOrigin.fetch_through(tunnel.port)) == digest(body)


def test_metadata_addresses_are_forbidden(stack, client_env):
    _, agent = stack
    with forwarding(
        client_env,
        agent.instance_id,
        "host=169.254.169.254,portNumber=80,localPortNumber=0",
        document="AWS-StartPortForwardingSessionToRemoteHost",
    ) as tunnel:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=30) as sock:
            assert sock.recv(10) == b""
        tunnel.wait_for("Forwarding to IP address 169.254.169.254 is forbidden.")


def test_a_refused_port_is_reported_and_the_session_goes_on(stack, client_env):
    _, agent = stack
    port = free_port()
    with forwarding(
        client_env, agent.instance_id, f"portNumber={port},localPortNumber=0"
    ) as tunnel:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=30) as sock:
            assert sock.recv(10) == b""  # closed: the destination refused
        tunnel.wait_for(f"Connection to localhost:{port} failed: connection refused")
        # The session is still there: once something listens, connections go through.
        with EchoServer(port=port):
            assert echo_round_trip(tunnel.port, b"still here") == b"still here"


def test_local_host_and_a_fixed_local_port(stack, client_env):
    _, agent = stack
    local = free_port()
    with (
        EchoServer() as echo,
        forwarding(
            client_env,
            agent.instance_id,
            f"portNumber={echo.port},localPortNumber={local}",
            extra=("--local-host", "127.0.0.3"),
        ) as tunnel,
    ):
        assert tunnel.port == local
        assert echo_round_trip(local, b"bound", host="127.0.0.3") == b"bound"
        refused = False
        try:
            socket.create_connection(("127.0.0.1", local), timeout=5).close()
        except ConnectionRefusedError:
            refused = True
        assert refused, "the listener should bind 127.0.0.3 only"


def test_a_stalled_reader_does_not_stall_the_session_forever(stack, client_env):
    """A reader that stops for a while holds data back (it is not lost), and everything
    arrives once it reads again. What the tunnel buffers meanwhile is bounded (8 MiB per
    direction in the data channel, 1 MiB per connection, and the sockets' buffers), far
    below the 128 MiB offered."""
    _, agent = stack
    payload = os.urandom(128 << 20)
    with (
        EchoServer() as echo,
        forwarding(
            client_env, agent.instance_id, f"portNumber={echo.port},localPortNumber=0"
        ) as tunnel,
    ):
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=60) as sock:
            sock.setblocking(True)
            sent = 0
            sock.settimeout(2)
            try:
                while sent < len(payload):  # send without reading until the tunnel pushes back
                    sent += sock.send(payload[sent : sent + 65536])
            except TimeoutError:
                pass
            assert sent < len(payload), "nothing pushed back on a reader that never reads"
            time.sleep(1)
            sock.settimeout(60)
            with ThreadPoolExecutor(1) as pool:
                rest = pool.submit(lambda: (sock.sendall(payload[sent:]), sock.shutdown(1)))
                got = bytearray()
                while chunk := sock.recv(65536):
                    got += chunk
                rest.result(60)
        assert digest(bytes(got)) == digest(payload)


def test_aws_cli_port_forwarding_with_the_plugin_drop_in(stack, plugin_env):
    _, agent = stack
    env = plugin_env
    body = os.urandom(1 << 20)
    with HttpOrigin(body) as origin:
        parameters = json.dumps({"portNumber": [str(origin.port)], "localPortNumber": ["0"]})
        command = [
            AWS,
            "ssm",
            "start-session",
            "--target",
            agent.instance_id,
            "--document-name",
            "AWS-StartPortForwardingSession",
            "--parameters",
            parameters,
        ]
        with forwarding(env, "", "", command=command) as tunnel:
            assert digest(HttpOrigin.fetch_through(tunnel.port)) == digest(body)
