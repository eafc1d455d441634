"""Many sessions at once, dropped sockets, and the ways a session ends."""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pexpect

from hatchway.server.relay import Relay

HATCHWAY = [sys.executable, "-m", "hatchway"]
PROMPT = r"[#$] "


def spawn_session(env, target, *extra):
    return pexpect.spawn(
        HATCHWAY[0],
        [*HATCHWAY[1:], "start-session", "--target", target, *extra],
        env=env,
        encoding="utf-8",
        timeout=30,
    )


def run_piped(env, target, script, timeout=120):
    return subprocess.run(
        [*HATCHWAY, "start-session", "--target", target],
        input=script,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fifty_concurrent_sessions_keep_their_own_output(stack, client_env):
    _, agent = stack

    def one(i):
        marker = f"marker-{i:02d}-"
        # Each prints its marker many times; any byte from another session would show.
        script = f"for n in $(seq 1 200); do echo {marker}$n; done; exit {i % 7}\n"
        return i, run_piped(client_env, agent.instance_id, script)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    for i, result in results:
        owners = set(re.findall(r"marker-(\d\d)-", result.stdout))
        # Nothing crossed from another session.
        assert owners == {f"{i:02d}"}, (i, owners, result.returncode, result.stderr)
        lines = {line.strip() for line in result.stdout.splitlines()}
        assert {f"marker-{i:02d}-{n}" for n in range(1, 201)} <= lines, result.stderr
        assert result.returncode == i % 7, result.stderr


def test_a_dropped_websocket_resumes_with_the_stream_intact(stack, client_env):
    server, agent = stack
    child = spawn_session(client_env, agent.instance_id)
    try:
        child.expect("Starting session with SessionId: (\\S+)")
        session_id = child.match.group(1).strip()
        child.expect(PROMPT)
        # Output keeps flowing while the client's socket is cut under it.
        child.sendline(
            "for n in $(seq 1 400); do echo line-$n; sleep 0.005; done; echo done-$((1+1))"
        )
        child.expect("line-50\r\n")  # the output is flowing
        relay = server_relay(server)
        assert server.loop_call(drop_client_socket(relay, session_id))
        child.expect("Trying to open session \\(Retrying. Attempt #1\\)")
        child.expect("done-2")
        seen = [int(n) for n in _numbers(child.before + child.after)]
    finally:
        child.sendline("exit")
        child.close()
    # Every line exactly once and in order: nothing lost or repeated across the resume.
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert seen[-1] == 400


def _numbers(text):
    return re.findall(r"^line-(\d+)\r?$", text, re.MULTILINE)


def server_relay(server):
    return server.app_state().services.get(Relay)


async def drop_client_socket(relay, session_id):
    pairing = relay.pairings.get(session_id)
    if pairing is None or pairing.client.ws is None:
        return False
    # Abort the TCP connection without a close frame, as a network failure would.
    pairing.client.ws._req.transport.abort()
    return True


def test_terminate_session_from_the_api_ends_the_client(stack, client_env):
    server, agent = stack
    child = spawn_session(client_env, agent.instance_id)
    try:
        child.expect("Starting session with SessionId: (\\S+)")
        session_id = child.match.group(1).strip()
        child.expect(PROMPT)
        server.client().terminate_session(SessionId=session_id)
        child.expect("Exiting session with sessionId")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    (done,) = server.client().describe_sessions(State="History")["Sessions"]
    assert done["Status"] == "Terminated"


def test_idle_timeout_ends_the_session_with_a_clear_message(stack, client_env):
    server, agent = stack
    server.set_config(preference_minute=1.0)  # a "minute" of the document lasts one second
    document = {
        "schemaVersion": "1.0",
        "description": "short idle timeout",
        "sessionType": "Standard_Stream",
        "inputs": {
            "idleSessionTimeout": "2",
            "shellProfile": {"linux": "export GREETING=from-profile"},
        },
    }
    server.client().create_document(
        Name="Short-Idle", Content=json.dumps(document), DocumentType="Session"
    )
    child = spawn_session(client_env, agent.instance_id, "--document-name", "Short-Idle")
    try:
        child.expect(PROMPT)
        child.sendline("echo $GREETING")
        child.expect("from-profile")
        child.expect("timed out due to inactivity", timeout=20)
        child.expect(pexpect.EOF)
    finally:
        child.close()
