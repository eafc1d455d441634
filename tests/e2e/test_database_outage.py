"""The server's long-lived loops outlive a database outage: PostgreSQL stops while the
server runs, and once it is back, nodes are Online again and session limits are enforced,
without a server restart."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from hatchway.server.limits import IDLE_MESSAGE
from tests.helpers import ConnectedNode, LoopThread, running_server
from tests.postgres import postgres_server

OUTAGE_SECONDS = 10.0
HEARTBEAT = "control channel heartbeat"
WATCHDOG = "session limits watchdog"


class Failures(logging.Handler):
    """The supervised loops that reported a failure (from the server's thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.names.add(getattr(record, "task", ""))
            self.changed.notify_all()

    def wait_for(self, names: set[str], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: names <= self.names, timeout)


def eventually(check, timeout: float = 90.0):
    """Poll ``check`` (which the database may still fail) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (ClientError, BotoCoreError) as exc:
            last_error, value = exc, None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s (last error: {last_error})")


def test_nodes_and_limits_recover_from_a_database_outage(tmp_path):
    failures = Failures()
    supervise_log = logging.getLogger("hatchway.server.supervise")
    supervise_log.addHandler(failures)
    loop = LoopThread()
    try:
        with (
            postgres_server() as postgres,
            running_server(
                tmp_path / "server",
                database=postgres.url,
                heartbeat_seconds=0.2,
                ping_timeout=timedelta(seconds=2),
                preference_minute=1.0,  # a "minute" of a document lasts one second
            ) as server,
        ):
            node = ConnectedNode(server, loop)
            ssm = server.client()
            try:
                document = {
                    "schemaVersion": "1.0",
                    "description": "idle timeout within the outage",
                    "sessionType": "Standard_Stream",
                    "inputs": {"idleSessionTimeout": "5"},
                }
                ssm.create_document(
                    Name="Short-Idle", Content=json.dumps(document), DocumentType="Session"
                )
                session_id = ssm.start_session(Target=node.instance_id, DocumentName="Short-Idle")[
                    "SessionId"
                ]
                postgres.stop()
                stopped = time.monotonic()
                # Down until both loops have met the outage (the session idles out meanwhile).
                assert failures.wait_for({HEARTBEAT, WATCHDOG}, 60), failures.names
                time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
                postgres.start()
                back = datetime.now(UTC)

                def online_since_back():
                    (info,) = ssm.describe_instance_information()["InstanceInformationList"]
                    return info["PingStatus"] == "Online" and info["LastPingDateTime"] > back

                eventually(online_since_back)

                def ended():
                    history = ssm.describe_sessions(State="History")["Sessions"]
                    return [s for s in history if s["SessionId"] == session_id]

                (session,) = eventually(ended)
                assert session["Status"] == "Terminated"
                assert session["Details"] == IDLE_MESSAGE
            finally:
                node.close()
    finally:
        supervise_log.removeHandler(failures)
        loop.stop()
