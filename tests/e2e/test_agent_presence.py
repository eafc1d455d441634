"""An agent that goes away: its sessions' clients are told at once, and the sessions end
when it does not come back in time; an agent that comes back keeps the sessions it still
runs, and the server ends the others."""

import contextlib
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from hatchway.protocol.payloads import ERROR_BANNER
from tests.e2e.processes import HATCHWAY, AgentProcess, wait_for_node
from tests.helpers import running_server

GRACE = 3.0


class LiveClient:
    """`hatchway start-session` with a pipe for stdin, read as it prints."""

    def __init__(self, env, target):
        self.process = subprocess.Popen(
            [*HATCHWAY, "start-session", "--target", target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.out = {"stdout": b"", "stderr": b""}
        self.lock = threading.Lock()
        self.readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr))
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name, stream):
        for chunk in iter(lambda: stream.read1(4096), b""):
            with self.lock:
                self.out[name] += chunk

    def text(self, name):
        with self.lock:
            return self.out[name].decode(errors="replace")

    def send(self, line):
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def wait_for(self, name, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.text(name):
                return
            if self.process.poll() is not None:
                for reader in self.readers:
                    reader.join(5)
                if text in self.text(name):
                    return
                break
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} in {name}: {self.text(name)!r} {self.text('stderr')!r}")

    def session_id(self):
        self.wait_for("stderr", "Starting session with SessionId: ")
        return self.text("stderr").split("SessionId: ")[1].split()[0]

    def close(self):
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def session_named(server, session_id, state):
    for session in server.client().describe_sessions(State=state)["Sessions"]:
        if session["SessionId"] == session_id:
            return session
    return None


def wait_for_history(server, session_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = session_named(server, session_id, "History")
        if ended is not None:
            return ended
        time.sleep(0.05)
    raise AssertionError(f"{session_id} never ended")


def shell_ready(client):
    client.send("echo ready-$((20+22))")
    client.wait_for("stdout", "ready-42")


@contextlib.contextmanager
def agent_process_stack(tmp_path, grace):
    """A server whose agent grace is ``grace`` seconds, and a `hatchway agent run` process."""
    with running_server(tmp_path / "server", agent_grace_seconds=grace) as server:
        agent = AgentProcess(server, tmp_path / "agent")
        try:
            agent.start()
            wait_for_node(server, agent.instance_id, ("Online", "connected"))
            yield server, agent
        finally:
            agent.kill()


@pytest.fixture
def short_grace(tmp_path):
    with agent_process_stack(tmp_path, GRACE) as stack:
        yield stack


def test_a_killed_agent_is_reported_at_once_and_its_session_ends_after_the_grace(short_grace):
    server, agent = short_grace
    client = LiveClient(server.env(), agent.instance_id)
    try:
        session_id = client.session_id()
        shell_ready(client)
        agent.signal(signal.SIGKILL)
        client.wait_for(
            "stderr",
            f"The agent on {agent.instance_id} went away; waiting up to {GRACE:g} s "
            "for it to come back.",
        )
        reason = f"The agent on {agent.instance_id} went away and did not come back within 3 s."
        client.wait_for("stderr", f"SessionId: {session_id} : {ERROR_BANNER}{reason}")
        assert client.process.wait(30) == 255
        ended = wait_for_history(server, session_id)
        assert (ended["Status"], ended["Details"]) == ("Failed", reason)
    finally:
        client.close()


@pytest.fixture
def long_grace(tmp_path):
    with agent_process_stack(tmp_path, 600) as stack:
        yield stack


def test_a_session_its_restarted_agent_no_longer_has_fails_for_its_client(long_grace):
    server, agent = long_grace
    client = LiveClient(server.env(), agent.instance_id)
    try:
        session_id = client.session_id()
        shell_ready(client)
        agent.kill()
        client.wait_for("stderr", f"The agent on {agent.instance_id} went away;")
        agent.start()  # a new process: it has no sessions, and says so when it connects
        reason = f"The agent on {agent.instance_id} came back without this session."
        client.wait_for("stderr", f"SessionId: {session_id} : {ERROR_BANNER}{reason}")
        assert client.process.wait(30) == 255
        ended = wait_for_history(server, session_id)
        assert (ended["Status"], ended["Details"]) == ("Failed", reason)
    finally:
        client.close()


def test_an_agent_that_comes_back_keeps_its_sessions_and_the_others_end(stack):
    from hatchway.server.storage.models import Session

    server, agent = stack
    env = server.env()
    client = LiveClient(env, agent.instance_id)
    try:
        live_id = client.session_id()
        shell_ready(client)
        # A session the agent does not run (as after an agent restart).
        lost_id = "admin-0lostlostlostlost0"

        async def add_lost():
            async with server.app_state().db() as db, db.begin():
                db.add(
                    Session(
                        session_id=lost_id,
                        target=agent.instance_id,
                        document_name="SSM-SessionManagerRunShell",
                        owner="arn:aws:iam::000000000000:user/admin",
                        status="Connected",
                        start_date=datetime.now(UTC) - timedelta(minutes=1),
                        parameters={},
                        details="",
                    )
                )

        server.loop_call(add_lost())

        async def drop_control():
            await agent.agent.control._ws.close()

        agent.loop.run(drop_control())
        client.wait_for("stderr", f"The agent on {agent.instance_id} is back.")
        ended = wait_for_history(server, lost_id)
        assert (
            ended["Details"] == f"The agent on {agent.instance_id} came back without this session."
        )
        assert session_named(server, live_id, "Active") is not None
        client.send("echo still-$((40+2))")
        client.wait_for("stdout", "still-42")
    finally:
        client.close()
