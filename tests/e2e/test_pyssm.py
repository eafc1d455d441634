"""pyssm-client, a third-party client, against Hatchway's server and agent."""

import subprocess


def test_pyssm_exec_gets_output_and_exit_code(stack, client_env, pyssm):
    server, agent = stack
    result = subprocess.run(
        [
            pyssm,
            "exec",
            "--target",
            agent.instance_id,
            "--command",
            "echo marker-$((6*7)); exit 3",
            "--endpoint-url",
            server.url,
            "--region",
            server.region,
            "--timeout",
            "60",
        ],
        env=client_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "marker-42" in result.stdout, result.stderr
    assert result.returncode == 3
