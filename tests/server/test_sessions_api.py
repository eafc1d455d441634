"""StartSession, ResumeSession, TerminateSession and DescribeSessions through boto3."""

import json
import re
import time

import pytest

from hatchway.protocol import MessageType
from tests.helpers import wait_until

LONG = "x" * 257


def test_start_session_follows_the_reference(server, ssm, node):
    response = ssm.start_session(Target=node.instance_id, Reason="debugging the disk")
    session_id = response["SessionId"]
    assert re.fullmatch(r"admin-[0-9a-f]{17}", session_id)
    assert len(session_id) <= 96
    host = server.url.removeprefix("http://")
    assert response["StreamUrl"] == (
        f"ws://{host}/v1/data-channel/{session_id}?role=publish_subscribe"
    )
    assert 0 < len(response["TokenValue"]) <= 300
    # The agent is told over its control channel.
    message = node.wait_for(lambda m: m.message_type == MessageType.INTERACTIVE_SHELL)
    payload = json.loads(message.payload)
    task = json.loads(payload["Content"])
    assert payload["TaskId"] == task["SessionId"] == session_id
    assert task["DocumentName"] == "SSM-SessionManagerRunShell"
    assert task["DocumentContent"]["sessionType"] == "Standard_Stream"
    assert task["SessionOwner"].endswith(":user/admin")
    # The reason is kept and shown.
    (listed,) = ssm.describe_sessions(State="Active")["Sessions"]
    assert listed["SessionId"] == session_id
    assert listed["Reason"] == "debugging the disk"
    assert listed["Target"] == node.instance_id
    assert listed["Status"] == "Connecting"


def test_parameters_are_typed_for_the_agent(ssm, node):
    ssm.start_session(
        Target=node.instance_id,
        DocumentName="AWS-StartPortForwardingSession",
        Parameters={"portNumber": ["22"], "localPortNumber": ["0"]},
    )
    message = node.wait_for(lambda m: m.message_type == MessageType.INTERACTIVE_SHELL)
    task = json.loads(json.loads(message.payload)["Content"])
    assert task["DocumentContent"]["properties"] == {
        "portNumber": "22",
        "localPortNumber": "0",
        "type": "LocalPortForwarding",
    }


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"Target": ""}, "ValidationException"),
        ({"Target": "x" * 401}, "ValidationException"),
        ({"Target": "mi-0123456789abcdef0", "DocumentName": "no"}, "ValidationException"),
        ({"Target": "mi-0123456789abcdef0", "DocumentName": "bad name!"}, "ValidationException"),
        ({"Target": "mi-0123456789abcdef0", "Reason": LONG}, "ValidationException"),
        (
            {"Target": "mi-0123456789abcdef0", "Parameters": {"k" * 256: ["v"]}},
            "ValidationException",
        ),
        ({"Target": "mi-0123456789abcdef0", "Parameters": {"k": [""]}}, "ValidationException"),
        ({"Target": "mi-0123456789abcdef0", "DocumentName": "Nope-Doc"}, "InvalidDocument"),
        ({"Target": "mi-0123456789abcdef0"}, "TargetNotConnected"),
    ],
)
def test_start_session_errors(ssm, kwargs, code):
    with pytest.raises(ssm.exceptions.ClientError) as info:
        ssm.start_session(**kwargs)
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_empty_reason_is_invalid(server):
    # botocore validates min length itself, so send the raw request.
    from tests.server.test_api_basics import raw_post

    status, _, body = raw_post(
        server, b'{"Target":"mi-0123456789abcdef0","Reason":""}', "AmazonSSM.StartSession"
    )
    assert status == 400 and json.loads(body)["__type"] == "ValidationException"


def test_parameter_errors(ssm, node):
    with pytest.raises(ssm.exceptions.ClientError) as info:
        ssm.start_session(
            Target=node.instance_id,
            DocumentName="AWS-StartPortForwardingSession",
            Parameters={"portNumber": ["not-a-port"]},
        )
    assert info.value.response["Error"]["Code"] == "InvalidParameters"


def test_terminate_and_history(ssm, node):
    session_id = ssm.start_session(Target=node.instance_id)["SessionId"]
    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
    closed = node.wait_for(lambda m: m.message_type == MessageType.CHANNEL_CLOSED)
    assert json.loads(closed.payload)["SessionId"] == session_id
    assert ssm.describe_sessions(State="Active")["Sessions"] == []
    (done,) = ssm.describe_sessions(State="History")["Sessions"]
    assert done["Status"] == "Terminated" and "EndDate" in done
    # Terminating twice is harmless; resuming a finished session gives no token.
    ssm.terminate_session(SessionId=session_id)
    resumed = ssm.resume_session(SessionId=session_id)
    assert resumed.get("TokenValue") is None


def test_resume_gives_a_fresh_token(ssm, node):
    started = ssm.start_session(Target=node.instance_id)
    resumed = ssm.resume_session(SessionId=started["SessionId"])
    assert resumed["TokenValue"] and resumed["TokenValue"] != started["TokenValue"]
    assert resumed["StreamUrl"] == started["StreamUrl"]
    with pytest.raises(ssm.exceptions.DoesNotExistException):
        ssm.resume_session(SessionId="admin-00000000000000000")


def task_complete(session_id, instance_id, output, status="Failed"):
    """The agent_task_complete an agent sends when a session ends."""
    from hatchway.protocol import AgentMessage

    payload = {
        "SchemaVersion": 1,
        "TaskId": session_id,
        "Topic": "agent_task_complete",
        "FinalTaskStatus": status,
        "Output": output,
        "InstanceId": instance_id,
    }
    return AgentMessage(
        message_type="agent_task_complete",
        created_date=int(time.time() * 1000),
        payload=json.dumps(payload).encode(),
    )


def test_agent_task_complete_ends_the_session(ssm, node, loop_thread):
    session_id = ssm.start_session(Target=node.instance_id)["SessionId"]
    message = task_complete(
        session_id, node.instance_id, "\n----------ERROR-------\nsomething broke"
    )
    assert loop_thread.run(node.channel.send(message))
    ack = node.wait_for(lambda m: m.message_type == MessageType.AGENT_TASK_ACKNOWLEDGE)
    assert json.loads(ack.payload)["MessageId"] == str(message.message_id)
    history = wait_until(
        lambda: ssm.describe_sessions(State="History")["Sessions"], what="the session to end"
    )
    assert history[0]["Status"] == "Failed"
    assert "something broke" in history[0]["Details"]


def test_a_result_sent_twice_counts_once(ssm, node, loop_thread, caplog):
    """The official agent reports a failed session twice: the first result stands, and the
    session is completed (and logged) once."""
    session_id = ssm.start_session(Target=node.instance_id)["SessionId"]
    caplog.set_level("INFO", logger="hatchway.server.sessions")
    for output in ("first reason", "second reason"):
        message = task_complete(session_id, node.instance_id, output)
        assert loop_thread.run(node.channel.send(message))
        node.wait_for(
            lambda m, message=message: (
                m.message_type == MessageType.AGENT_TASK_ACKNOWLEDGE
                and json.loads(m.payload)["MessageId"] == str(message.message_id)
            )
        )
    for _ in range(200):  # until the session is in history and its completion logged
        history = ssm.describe_sessions(State="History")["Sessions"]
        completed = [r for r in caplog.records if r.getMessage() == "session complete"]
        if history and completed:
            break
        time.sleep(0.05)
    (session,) = history
    assert session["Details"] == "first reason"
    assert len(completed) == 1


RESULT_ROUNDS = 200


def test_the_first_result_stands_every_time(ssm, node, loop_thread, caplog):
    """The same race, many times over: each session's two results go out back to back, and
    every session keeps its first one."""
    ids = [ssm.start_session(Target=node.instance_id)["SessionId"] for _ in range(RESULT_ROUNDS)]

    async def send_all() -> bool:
        sent = True
        for number, session_id in enumerate(ids):
            for which in ("first", "second"):
                message = task_complete(session_id, node.instance_id, f"{which} {number}")
                sent = await node.channel.send(message) and sent
        return sent

    caplog.set_level("INFO", logger="hatchway.server.sessions")
    assert loop_thread.run(send_all())
    for _ in range(1200):  # until every session is in history and logged (at most 60 s)
        history = ssm.describe_sessions(State="History", MaxResults=200)["Sessions"]
        completed = [r for r in caplog.records if r.getMessage() == "session complete"]
        if len(history) == len(completed) == RESULT_ROUNDS:
            break
        time.sleep(0.05)
    details = {s["SessionId"]: s["Details"] for s in history}
    assert details == {session_id: f"first {n}" for n, session_id in enumerate(ids)}
    assert len(completed) == RESULT_ROUNDS


def test_describe_sessions_filters_and_pages(ssm, node):
    ids = [ssm.start_session(Target=node.instance_id)["SessionId"] for _ in range(7)]
    seen, token = [], None
    while True:
        kwargs = {"State": "Active", "MaxResults": 3}
        if token:
            kwargs["NextToken"] = token
        page = ssm.describe_sessions(**kwargs)
        assert len(page["Sessions"]) <= 3
        seen += [s["SessionId"] for s in page["Sessions"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    only = ssm.describe_sessions(State="Active", Filters=[{"key": "SessionId", "value": ids[2]}])[
        "Sessions"
    ]
    assert [s["SessionId"] for s in only] == [ids[2]]
    mine = ssm.describe_sessions(State="Active", Filters=[{"key": "Owner", "value": "Self"}])
    assert len(mine["Sessions"]) == 7
    nobody = ssm.describe_sessions(
        State="Active", Filters=[{"key": "Target", "value": "mi-00000000000000000"}]
    )
    assert nobody["Sessions"] == []
    later = ssm.describe_sessions(
        State="Active", Filters=[{"key": "InvokedAfter", "value": "2999-01-01T00:00:00Z"}]
    )
    assert later["Sessions"] == []


def test_get_connection_status(ssm, node):
    assert ssm.get_connection_status(Target=node.instance_id)["Status"] == "connected"
    assert ssm.get_connection_status(Target="mi-00000000000000000")["Status"] == "notconnected"


@pytest.mark.parametrize(
    ("default_user", "tag"),
    [("", None), ("", ""), ("no spaces allowed", None), ("", "bad;name")],
)
def test_run_as_without_a_valid_user_is_refused_and_recorded(server, ssm, node, default_user, tag):
    document = {
        "schemaVersion": "1.0",
        "description": "RunAs on",
        "sessionType": "Standard_Stream",
        "inputs": {"runAsEnabled": True, "runAsDefaultUser": default_user},
    }
    ssm.create_document(Name="RunAs-Doc", Content=json.dumps(document), DocumentType="Session")
    if tag is not None:
        server.tag_admin({"SSMSessionRunAs": tag})
    with pytest.raises(ssm.exceptions.ClientError) as error:
        ssm.start_session(Target=node.instance_id, DocumentName="RunAs-Doc")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == "Invalid RunAs username"
    (failed,) = ssm.describe_sessions(State="History")["Sessions"]
    assert failed["Status"] == "Failed"
