"""pyssm-client's port-forward (a third-party smux client) through Hatchway's agent."""

import hashlib
import subprocess

from tests.e2e.ports import HttpOrigin, free_port, wait_for_port


def test_pyssm_port_forward_carries_http(stack, client_env, pyssm_python, tmp_path):
    server, agent = stack
    body = bytes(range(256)) * 4096  # 1 MiB: many smux frames, split across messages
    local = free_port()
    with HttpOrigin(body) as origin:
        process = subprocess.Popen(
            [
                str(pyssm_python.parent / "pyssm"),
                "port-forward",
                "--target",
                agent.instance_id,
                "--remote-port",
                str(origin.port),
                "--local-port",
                str(local),
                "--endpoint-url",
                server.url,
                "--region",
                server.region,
            ],
            env=client_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(local, process)
            for _ in range(3):  # one session, several connections
                got = origin.fetch_through(local)
                assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()
        finally:
            process.terminate()
            output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output
