"""A session whose client never opens its data channel ends when the client's token
expires: the agent is told and ends its side, and the reason is recorded."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import pexpect

from hatchway.server.limits import JOIN_MESSAGE
from tests.helpers import wait_until


def test_a_session_nobody_joins_ends_when_the_token_expires(stack):
    server, agent = stack
    server.set_config(token_lifetime=timedelta(seconds=3))
    ssm = server.client()
    session_id = ssm.start_session(Target=agent.instance_id)["SessionId"]
    # The agent took the session and opened its side; the client never comes.
    wait_until(lambda: session_id in agent.agent.session_workers)

    def in_history():
        history = ssm.describe_sessions(
            State="History", Filters=[{"key": "SessionId", "value": session_id}]
        )["Sessions"]
        return history[0] if history else None

    ended = wait_until(in_history)
    assert ended["Status"] == "Failed"
    assert ended["Details"] == JOIN_MESSAGE
    # The agent was told: its side of the session (and the shell it would run) is gone.
    wait_until(lambda: session_id not in agent.agent.workers)
    assert ssm.describe_sessions(State="Active")["Sessions"] == []


def test_a_client_that_joined_in_time_is_not_ended(stack, client_env):
    """The deadline is for joining: a session in use outlives its client's token."""
    server, agent = stack
    server.set_config(token_lifetime=timedelta(seconds=3))
    child = pexpect.spawn(
        sys.executable,
        ["-m", "hatchway", "start-session", "--target", agent.instance_id],
        env=client_env,
        encoding="utf-8",
        timeout=30,
    )
    try:
        child.expect(r"[#$] ")
        started = time.monotonic()
        # In use until well past the token's lifetime (and the watchdog's looks at it).
        while time.monotonic() - started < 5:
            child.sendline("echo still-$((40+2))")
            child.expect("still-42")
        (active,) = server.client().describe_sessions(State="Active")["Sessions"]
        assert active["Status"] == "Connected"
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
