import json

import pytest

from hatchway.protocol import (
    HandshakeRequest,
    HandshakeResponse,
    PayloadType,
    PortFlag,
    ProcessedClientAction,
    Role,
    SessionCipher,
)
from hatchway.protocol.agent_session import (
    EXIT_CODE_ACTION,
    AgentSession,
    InputReceived,
    KmsDecryptNeeded,
    ResizeRequested,
    SessionFailed,
    SessionReady,
    State,
)
from hatchway.protocol.payloads import EncChallengeRequest, EncChallengeResponse, HandshakeComplete
from hatchway.protocol.stream import DataChannel, StreamData

T0 = 1_700_000_000.0
KEY = bytes(range(64))


def events(thing):
    out = []
    while (e := thing.next_event()) is not None:
        out.append(e)
    return out


def exchange(agent, client, now=T0):
    """Deliver everything in flight both ways until quiet; returns the client's stream data."""
    got = []
    for _ in range(20):
        moved = False
        for frame in agent.data_to_send():
            client.receive(frame, now=now)
            moved = True
        got += [e for e in events(client) if isinstance(e, StreamData)]
        for frame in client.data_to_send():
            agent.receive(frame, now)
            moved = True
        if not moved:
            break
    return got


def respond(client, actions, version="1.2.650.0", now=T0):
    response = HandshakeResponse(version, tuple(actions))
    client.send(response.to_json(), PayloadType.HANDSHAKE_RESPONSE, now=now)


def new_agent(**kwargs):
    defaults = dict(
        session_id="admin-1",
        target="mi-0123456789abcdef0",
        session_type="Standard_Stream",
        agent_version="3.3.987.0",
    )
    return AgentSession(**(defaults | kwargs))


def test_handshake_for_a_shell_with_exit_codes():
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    (request_event,) = exchange(agent, client)
    assert request_event.payload_type == PayloadType.HANDSHAKE_REQUEST
    request = HandshakeRequest.from_json(request_event.payload)
    assert request.session_type == "Standard_Stream"
    assert [a.action_type for a in request.actions] == [
        "SessionType",
        EXIT_CODE_ACTION,
        "PortErrorDetails",
        "PseudoTerminal",
    ]
    respond(
        client,
        [ProcessedClientAction("SessionType", 1), ProcessedClientAction(EXIT_CODE_ACTION, 1)],
    )
    (complete,) = exchange(agent, client)
    assert complete.payload_type == PayloadType.HANDSHAKE_COMPLETE
    assert HandshakeComplete.from_json(complete.payload).customer_message == ""
    assert events(agent) == [SessionReady("1.2.650.0", encrypted=False, exit_codes=True)]
    client.send(b"ls\r", now=T0)
    client.send(b'{"cols":100,"rows":30}', PayloadType.SIZE, now=T0)
    exchange(agent, client)
    assert events(agent) == [InputReceived(b"ls\r"), ResizeRequested(100, 30)]
    agent.send_output(b"x" * 70_000, T0)
    agent.send_exit_code(3, T0)
    got = exchange(agent, client)
    assert b"".join(e.payload for e in got if e.payload_type == 1) == b"x" * 70_000
    assert [e.payload for e in got if e.payload_type == PayloadType.EXIT_CODE] == [b"EXIT_CODE: 3"]


def test_the_reference_clients_unsupported_answer_turns_exit_codes_off():
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(
        client,
        [
            ProcessedClientAction("SessionType", 1),
            ProcessedClientAction.unsupported(EXIT_CODE_ACTION),
        ],
        version="1.2.0.0",
    )
    exchange(agent, client)
    (ready,) = events(agent)
    assert ready == SessionReady("1.2.0.0", encrypted=False, exit_codes=False)
    agent.send_exit_code(0, T0)
    assert exchange(agent, client) == []


def offered_actions(session_type):
    agent, client = new_agent(session_type=session_type), DataChannel(Role.CLIENT)
    agent.start(T0)
    (request,) = exchange(agent, client)
    return [a.action_type for a in HandshakeRequest.from_json(request.payload).actions]


def test_pseudo_terminal_is_offered_only_to_sessions_with_a_pty():
    assert "PseudoTerminal" in offered_actions("Standard_Stream")
    assert "PseudoTerminal" in offered_actions("InteractiveCommands")
    assert "PseudoTerminal" not in offered_actions("NonInteractiveCommands")
    assert "PseudoTerminal" not in offered_actions("Port")


@pytest.mark.parametrize(
    ("answer", "pty"),
    [
        (ProcessedClientAction("PseudoTerminal", 1, {"Allocate": False}), False),
        (ProcessedClientAction("PseudoTerminal", 1, {"Allocate": True}), True),
        (ProcessedClientAction.unsupported("PseudoTerminal"), True),  # reference clients
        (ProcessedClientAction("PseudoTerminal", 2, {"Allocate": False}), True),  # failed
        (ProcessedClientAction("PseudoTerminal", 1, None), True),
        (ProcessedClientAction("PseudoTerminal", 1, {"Allocate": "false"}), True),
        (None, True),  # clients from before the action
    ],
)
def test_only_a_clients_explicit_no_turns_the_pty_off(answer, pty):
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(client, [ProcessedClientAction("SessionType", 1), *([answer] if answer else [])])
    exchange(agent, client)
    (ready,) = events(agent)
    assert ready == SessionReady(
        "1.2.650.0", encrypted=False, exit_codes=False, pseudo_terminal=pty
    )


def test_a_session_without_a_pty_passes_an_empty_message_on_as_the_end_of_input():
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(
        client,
        [
            ProcessedClientAction("SessionType", 1),
            ProcessedClientAction("PseudoTerminal", 1, {"Allocate": False}),
        ],
    )
    client.send(b"echo hi\n", now=T0)
    client.send(b"", now=T0)
    exchange(agent, client)
    assert events(agent)[1:] == [InputReceived(b"echo hi\n"), InputReceived(b"")]


def test_input_during_the_handshake_is_kept_until_the_session_is_ready():
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    client.send(b"early", now=T0)
    client.send(b'{"cols":90,"rows":20}', PayloadType.SIZE, now=T0)
    exchange(agent, client)
    assert events(agent) == []
    assert client.unacked_count == 0
    respond(client, [ProcessedClientAction("SessionType", 1)])
    exchange(agent, client)
    assert events(agent)[1:] == [InputReceived(b"early"), ResizeRequested(90, 20)]


def test_handshake_timeout_counts_from_the_clients_first_frame():
    agent = new_agent()
    agent.start(T0)
    # No client yet (it may be slow to open its data channel): the service's join
    # deadline bounds that wait, not the handshake's.
    agent.tick(T0 + 100)
    assert not [e for e in events(agent) if isinstance(e, SessionFailed)]
    assert agent.state is State.HANDSHAKING
    # The client shows up (it acknowledges the request) and never answers it.
    client = DataChannel(Role.CLIENT)
    for frame in agent.data_to_send():
        client.receive(frame, now=T0 + 100)
    for frame in client.data_to_send():
        agent.receive(frame, now=T0 + 100)
    agent.tick(T0 + 114)
    assert agent.state is State.HANDSHAKING
    agent.tick(T0 + 116)
    (failed,) = [e for e in events(agent) if isinstance(e, SessionFailed)]
    assert "Handshake timed out" in failed.reason
    assert agent.state is State.FAILED


def test_a_failed_session_type_action_fails_the_session():
    agent, client = (
        new_agent(session_type="Port", properties={"portNumber": "22"}),
        DataChannel(Role.CLIENT),
    )
    agent.start(T0)
    (request,) = exchange(agent, client)
    assert HandshakeRequest.from_json(request.payload).session_properties == {"portNumber": "22"}
    respond(client, [ProcessedClientAction("SessionType", 2, None, "Unknown session type Port")])
    exchange(agent, client)
    (failed,) = events(agent)
    assert failed.reason.endswith(
        "SessionType failed on client with status 2 error: Unknown session type Port"
    )


def test_kms_handshake_with_challenge():
    agent = new_agent(kms_key_id="alias/sessions")
    client = DataChannel(Role.CLIENT)
    agent.start(T0)
    (request,) = exchange(agent, client)
    assert HandshakeRequest.from_json(request.payload).kms_key_id == "alias/sessions"
    respond(
        client,
        [
            ProcessedClientAction("SessionType", 1),
            ProcessedClientAction(
                "KMSEncryption", 1, {"KMSCipherTextKey": "AQID", "ChallengeAcknowledgement": True}
            ),
            ProcessedClientAction(EXIT_CODE_ACTION, 1),
        ],
    )
    exchange(agent, client)
    (need,) = events(agent)
    assert isinstance(need, KmsDecryptNeeded) and need.ciphertext == b"\x01\x02\x03"
    assert need.encryption_context["aws:ssm:SessionId"] == "admin-1"
    assert need.encryption_context["aws:ssm:TargetId"] == "mi-0123456789abcdef0"
    assert "aws:ssm:RandomChallenge" in need.encryption_context
    agent.provide_data_key(KEY, T0)
    (challenge,) = exchange(agent, client)
    client_cipher = SessionCipher(KEY, Role.CLIENT)
    answer = client_cipher.answer_challenge(
        EncChallengeRequest.from_json(challenge.payload).challenge
    )
    client.set_cipher(client_cipher)
    client.send(EncChallengeResponse(answer).to_json(), PayloadType.ENC_CHALLENGE_RESPONSE, now=T0)
    (complete,) = exchange(agent, client)
    assert (
        json.loads(complete.payload)["CustomerMessage"]
        == "This session is encrypted using AWS KMS."
    )
    assert events(agent) == [SessionReady("1.2.650.0", encrypted=True, exit_codes=True)]
    agent.send_output(b"secret", T0)
    (out,) = exchange(agent, client)
    assert out.payload == b"secret"  # the client channel decrypted it


def encrypted_session(**kwargs):
    """An agent session through the KMS handshake, and the client's end of its channel."""
    agent, client = new_agent(kms_key_id="k", **kwargs), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(
        client,
        [
            ProcessedClientAction("SessionType", 1),
            ProcessedClientAction("KMSEncryption", 1, {"KMSCipherTextKey": "AQID"}),
        ],
    )
    exchange(agent, client)
    agent.provide_data_key(KEY, T0)
    (challenge,) = exchange(agent, client)
    client_cipher = SessionCipher(KEY, Role.CLIENT)
    sealed = EncChallengeRequest.from_json(challenge.payload).challenge
    client.set_cipher(client_cipher)
    answer = EncChallengeResponse(client_cipher.answer_challenge(sealed))
    client.send(answer.to_json(), PayloadType.ENC_CHALLENGE_RESPONSE, now=T0)
    exchange(agent, client)
    assert [type(e) for e in events(agent)] == [KmsDecryptNeeded, SessionReady]
    return agent, client


def test_an_encrypted_port_session_sends_all_the_room_it_offers():
    """The agent's port forwarding sends ``send_capacity`` bytes at a time, which the
    session cuts into 64 KiB messages and seals: 28 bytes more each. The room offered
    must allow for that, or the send buffer overflows mid-way (issue 13: FlowControlError
    after about 8 MiB in flight)."""
    agent, client = encrypted_session(session_type="Port", max_payload=64 * 1024)
    agent.send_output(b"x" * 1000, T0)  # what a first smux frame might leave
    sent = 1000
    for _ in range(100):
        room = agent.send_capacity
        if room == 0:
            break
        agent.send_output(b"y" * room, T0)
        sent += room
    assert agent.send_capacity == 0
    assert agent.channel.buffered_bytes <= 8 * 1024 * 1024
    # And once the client acknowledges, it all arrives, decrypted.
    got = exchange(agent, client)
    assert sum(len(e.payload) for e in got) == sent


def test_a_wrong_challenge_answer_fails():
    agent, client = new_agent(kms_key_id="k"), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(
        client,
        [
            ProcessedClientAction("SessionType", 1),
            ProcessedClientAction("KMSEncryption", 1, {"KMSCipherTextKey": "AQID"}),
        ],
    )
    exchange(agent, client)
    events(agent)
    agent.provide_data_key(KEY, T0)
    exchange(agent, client)
    client.send(
        EncChallengeResponse(b"\x00" * 92).to_json(), PayloadType.ENC_CHALLENGE_RESPONSE, now=T0
    )
    exchange(agent, client)
    (failed,) = events(agent)
    assert failed.reason.endswith("Encryption challenge does not match!")


def test_terminate_flag_reaches_the_agent():
    agent, client = new_agent(), DataChannel(Role.CLIENT)
    agent.start(T0)
    exchange(agent, client)
    respond(client, [ProcessedClientAction("SessionType", 1)])
    exchange(agent, client)
    events(agent)
    client.send(PortFlag.TERMINATE_SESSION.to_bytes_payload(), PayloadType.FLAG, now=T0)
    exchange(agent, client)
    (flag,) = events(agent)
    assert flag.flag is PortFlag.TERMINATE_SESSION
