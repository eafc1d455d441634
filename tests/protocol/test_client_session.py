"""ClientSession driven by an agent-side DataChannel, with no network."""

import base64
import json
import os
import uuid

import pytest

from hatchway.protocol import (
    AgentMessage,
    ChannelClosed,
    DataChannel,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    PayloadType,
    PortFlag,
    ProtocolError,
    Role,
    SessionCipher,
    decode,
)
from hatchway.protocol.client_session import (
    CLIENT_VERSION,
    SHELL_SESSION_TYPES,
    ClientSession,
    ClientState,
    EncryptionChallengeAnswered,
    ExitCodeReceived,
    FlagReceived,
    HandshakeStarted,
    KmsDataKeyNeeded,
    OutputReceived,
    SessionEnded,
    SessionFailed,
    SessionStarted,
    StdErrReceived,
    UnknownPayloadReceived,
    parse_exit_code,
)
from hatchway.protocol.payloads import ProcessedClientAction, RequestedClientAction
from hatchway.protocol.port import ConnectError
from hatchway.protocol.stream import StreamData

T0 = 1_700_000_000.0
DATA_KEY = bytes(range(64))


class Pair:
    """A client session and an agent-side channel joined by a lossless wire.

    ``pump`` moves frames both ways until the wire is quiet; the agent's stream
    messages collect in ``received`` and every client frame is kept in ``wire``.
    """

    def __init__(self, **session_args):
        self.client = ClientSession("sess-1", "i-0123456789abcdef0", **session_args)
        self.agent = DataChannel(Role.AGENT)
        self.now = T0
        self.received = []
        self.wire = []

    def agent_sends(self, payload, payload_type=PayloadType.OUTPUT):
        self.agent.send(payload, payload_type, now=self.now)
        self.pump()

    def pump(self):
        while True:
            to_client = self.agent.data_to_send()
            to_agent = self.client.data_to_send()
            if not to_client and not to_agent:
                return
            for frame in to_client:
                self.client.receive(frame, self.now)
            for frame in to_agent:
                self.wire.append(decode(frame))
                self.agent.receive(frame, now=self.now)
            while (event := self.agent.next_event()) is not None:
                if isinstance(event, StreamData):
                    self.received.append(event)

    def to_agent(self):
        """Deliver what the client queued; return the stream messages the agent got."""
        self.pump()
        got, self.received = self.received, []
        return got

    def events(self):
        out = []
        while (event := self.client.next_event()) is not None:
            out.append(event)
        return out


def shell_request(**extra):
    return HandshakeRequest.build("3.3.987.0", "Standard_Stream", None, **extra).to_json()


def test_handshake_response_is_byte_exact_and_session_starts():
    pair = Pair()
    pair.agent_sends(shell_request(), PayloadType.HANDSHAKE_REQUEST)
    assert pair.events() == [HandshakeStarted("3.3.987.0", "Standard_Stream", {}, None)]
    assert pair.client.state is ClientState.HANDSHAKING

    (response_event,) = pair.to_agent()
    ack, response = pair.wire
    assert ack.message_type == MessageType.ACKNOWLEDGE
    assert (response.message_type, response.sequence_number, response.flags) == (
        "input_stream_data",
        0,
        0,
    )
    assert response.payload_type == PayloadType.HANDSHAKE_RESPONSE
    assert (
        response.payload
        == response_event.payload
        == (
            b'{"ClientVersion":"1.2.650.0","ProcessedClientActions":[{"ActionType":"SessionType",'
            b'"ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}'
        )
    )

    pair.agent_sends(
        HandshakeComplete(1234, "Hello there").to_json(), PayloadType.HANDSHAKE_COMPLETE
    )
    assert pair.events() == [
        SessionStarted("Standard_Stream", {}, "3.3.987.0", "Hello there", handshake=True)
    ]
    assert pair.client.state is ClientState.ESTABLISHED

    pair.client.send_size(120, 40, pair.now)
    pair.client.send_input(b"ls\r", pair.now)
    got = pair.to_agent()
    assert [(m.payload_type, m.payload) for m in got] == [
        (PayloadType.SIZE, b'{"cols":120,"rows":40}'),
        (PayloadType.OUTPUT, b"ls\r"),
    ]


def test_unsupported_action_uses_the_reference_quirk():
    request = HandshakeRequest(
        "3.3.987.0",
        (
            RequestedClientAction("SessionType", {"SessionType": "Standard_Stream"}),
            RequestedClientAction("Teleport", {"To": "Mars"}),
        ),
    )
    pair = Pair()
    pair.agent_sends(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
    (response,) = pair.to_agent()
    body = json.loads(response.payload)
    assert body["ProcessedClientActions"][1] == {
        "ActionType": "Teleport",
        "ActionStatus": 0,
        "ActionResult": 3,
        "Error": "Unsupported action Teleport",
    }
    assert body["Errors"] == ["Unsupported action Teleport"]
    assert body["ClientVersion"] == CLIENT_VERSION


@pytest.mark.parametrize("wanted", [True, False])
def test_pseudo_terminal_is_answered_with_what_the_client_wants(wanted):
    pair = Pair(pseudo_terminal=wanted)
    built = HandshakeRequest.build("3.3.987.0", "Standard_Stream", None)
    offer = RequestedClientAction("PseudoTerminal", {})
    request = HandshakeRequest(built.agent_version, (*built.actions, offer)).to_json()
    pair.agent_sends(request, PayloadType.HANDSHAKE_REQUEST)
    (response,) = pair.to_agent()
    answer = HandshakeResponse.from_json(response.payload).action("PseudoTerminal")
    assert answer == ProcessedClientAction("PseudoTerminal", 1, {"Allocate": wanted})
    assert HandshakeResponse.from_json(response.payload).errors is None
    assert pair.client.pseudo_terminal is wanted
    pair.agent_sends(HandshakeComplete(5, "").to_json(), PayloadType.HANDSHAKE_COMPLETE)
    if wanted:
        with pytest.raises(ProtocolError):
            pair.client.end_input(pair.now)
    else:
        pair.client.send_input(b"echo hi\n", pair.now)
        pair.client.end_input(pair.now)
        assert [m.payload for m in pair.to_agent()] == [b"echo hi\n", b""]


def test_an_agent_that_does_not_offer_pseudo_terminal_keeps_the_pty():
    pair = Pair(pseudo_terminal=False)
    pair.agent_sends(shell_request(), PayloadType.HANDSHAKE_REQUEST)
    pair.agent_sends(HandshakeComplete(5, "").to_json(), PayloadType.HANDSHAKE_COMPLETE)
    assert pair.client.pseudo_terminal is True
    with pytest.raises(ProtocolError):
        pair.client.end_input(pair.now)


@pytest.mark.parametrize(
    ("session_type", "session_types", "error"),
    [
        ("Bogus", None, "Unknown session type Bogus"),
        ("Port", SHELL_SESSION_TYPES, "session type Port is not supported by this client"),
    ],
)
def test_session_type_failures(session_type, session_types, error):
    args = {} if session_types is None else {"session_types": session_types}
    pair = Pair(**args)
    request = HandshakeRequest.build("3.3.987.0", session_type, {"portNumber": "22"})
    pair.agent_sends(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
    (response,) = pair.to_agent()
    parsed = HandshakeResponse.from_json(response.payload)
    (action,) = parsed.actions
    assert (action.status, action.result) == (2, None)
    assert action.error == f"Failed to process action SessionType: {error}"
    assert parsed.errors == (error,)
    # No session type was agreed, so a HandshakeComplete cannot start a session.
    pair.agent_sends(HandshakeComplete().to_json(), PayloadType.HANDSHAKE_COMPLETE)
    events = pair.events()
    assert events[-1] == SessionFailed("unable to determine SessionType")


def test_port_session_reports_its_properties():
    pair = Pair()
    properties = {"portNumber": "22", "type": "LocalPortForwarding"}
    request = HandshakeRequest.build("3.3.987.0", "Port", properties)
    pair.agent_sends(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
    pair.to_agent()
    pair.agent_sends(HandshakeComplete().to_json(), PayloadType.HANDSHAKE_COMPLETE)
    started = pair.events()[-1]
    assert started == SessionStarted("Port", properties, "3.3.987.0", "", handshake=True)


def test_kms_without_a_random_challenge_binds_and_acknowledges_none():
    pair = Pair()
    pair.agent_sends(shell_request(kms_key_id="alias/session"), PayloadType.HANDSHAKE_REQUEST)
    needed = pair.events()[-1]
    assert needed == KmsDataKeyNeeded(
        "alias/session", {"aws:ssm:SessionId": "sess-1", "aws:ssm:TargetId": "i-0123456789abcdef0"}
    )
    pair.client.provide_data_key(b"blob", DATA_KEY, pair.now)
    (response,) = pair.to_agent()
    result = json.loads(response.payload)["ProcessedClientActions"][1]["ActionResult"]
    assert "ChallengeAcknowledgement" not in result


def test_kms_handshake_challenge_and_encrypted_traffic():
    pair = Pair()
    challenge = os.urandom(16)
    request = shell_request(kms_key_id="alias/session", challenge=challenge)
    pair.agent_sends(request, PayloadType.HANDSHAKE_REQUEST)
    assert pair.events() == [
        HandshakeStarted("3.3.987.0", "Standard_Stream", {}, "alias/session"),
        # The agent's random challenge is bound into the data key (data-channel.md §4.5).
        KmsDataKeyNeeded(
            "alias/session",
            {
                "aws:ssm:SessionId": "sess-1",
                "aws:ssm:TargetId": "i-0123456789abcdef0",
                "aws:ssm:RandomChallenge": base64.b64encode(challenge).decode(),
            },
        ),
    ]
    assert pair.client.state is ClientState.AWAITING_DATA_KEY
    assert pair.to_agent() == []  # nothing but the ack until the key is there

    blob = b"\x01\x02opaque-ciphertext-blob"
    pair.client.provide_data_key(blob, DATA_KEY, pair.now)
    (response,) = pair.to_agent()
    body = json.loads(response.payload)
    assert body["ProcessedClientActions"][1] == {
        "ActionType": "KMSEncryption",
        "ActionStatus": 1,
        "ActionResult": {
            "KMSCipherTextKey": base64.b64encode(blob).decode(),
            "KMSCipherTextHash": None,
            "ChallengeAcknowledgement": True,
        },
        "Error": "",
    }
    assert HandshakeResponse.from_json(response.payload).challenge_acknowledged
    assert body["Errors"] is None
    assert HandshakeResponse.from_json(response.payload).kms_ciphertext_key == blob

    agent_cipher = SessionCipher(DATA_KEY, Role.AGENT)
    secret = os.urandom(64)
    pair.agent_sends(
        EncChallengeRequest(agent_cipher.encrypt(secret)).to_json(),
        PayloadType.ENC_CHALLENGE_REQUEST,
    )
    assert pair.events() == [EncryptionChallengeAnswered()]
    (answer,) = pair.to_agent()
    assert answer.payload_type == PayloadType.ENC_CHALLENGE_RESPONSE
    returned = EncChallengeResponse.from_json(answer.payload).challenge
    assert agent_cipher.check_challenge(secret, returned)

    pair.agent.set_cipher(agent_cipher)
    pair.agent_sends(
        HandshakeComplete(5, "This session is encrypted using AWS KMS.").to_json(),
        PayloadType.HANDSHAKE_COMPLETE,
    )
    pair.agent_sends(b"secret output")
    pair.agent_sends(b"EXIT_CODE: 0", PayloadType.EXIT_CODE)
    assert pair.events() == [
        SessionStarted(
            "Standard_Stream", {}, "3.3.987.0", "This session is encrypted using AWS KMS."
        ),
        OutputReceived(b"secret output"),
        ExitCodeReceived(0, "EXIT_CODE: 0"),
    ]

    pair.client.send_input(b"whoami\r", pair.now)
    pair.client.send_size(80, 24, pair.now)
    pair.wire.clear()
    delivered = pair.to_agent()
    assert [e.payload for e in delivered] == [b"whoami\r", b'{"cols":80,"rows":24}']
    sealed, size = (m for m in pair.wire if m.message_type == "input_stream_data")
    assert sealed.payload != b"whoami\r"  # sealed on the wire
    assert len(sealed.payload) == 12 + len(b"whoami\r") + 16
    assert size.payload == b'{"cols":80,"rows":24}'  # size stays in clear


def encrypted_pair(**session_args):
    """A Pair through the KMS handshake, with both ends sealing."""
    pair = Pair(**session_args)
    pair.agent_sends(shell_request(kms_key_id="alias/session"), PayloadType.HANDSHAKE_REQUEST)
    pair.client.provide_data_key(b"blob", DATA_KEY, pair.now)
    pair.to_agent()
    agent_cipher = SessionCipher(DATA_KEY, Role.AGENT)
    pair.agent_sends(
        EncChallengeRequest(agent_cipher.encrypt(os.urandom(64))).to_json(),
        PayloadType.ENC_CHALLENGE_REQUEST,
    )
    pair.agent.set_cipher(agent_cipher)
    pair.agent_sends(HandshakeComplete(5, "").to_json(), PayloadType.HANDSHAKE_COMPLETE)
    assert pair.client.state is ClientState.ESTABLISHED
    pair.to_agent()
    return pair


@pytest.mark.parametrize("chunk", [1024, 64 * 1024])
def test_encrypted_input_takes_all_the_room_it_offers(chunk):
    """Sealed input messages are 28 bytes longer than the input: ``send_capacity``
    allows for that, so sending all of it at once never overflows the send buffer."""
    pair = encrypted_pair(max_input_chunk=chunk)
    pair.client.send_input(b"x" * 100, pair.now)
    sent = 100
    for _ in range(10_000):
        room = pair.client.send_capacity
        if room == 0:
            break
        pair.client.send_input(b"y" * room, pair.now)
        sent += room
    assert pair.client.send_capacity == 0
    assert pair.client.channel.buffered_bytes <= 8 * 1024 * 1024
    assert sum(len(m.payload) for m in pair.to_agent()) == sent


def test_refusing_kms_fails_the_action():
    pair = Pair()
    pair.agent_sends(shell_request(kms_key_id="alias/k"), PayloadType.HANDSHAKE_REQUEST)
    pair.client.refuse_kms("AccessDeniedException: no", pair.now)
    (response,) = pair.to_agent()
    parsed = HandshakeResponse.from_json(response.payload)
    kms = parsed.action("KMSEncryption")
    assert kms is not None
    assert (kms.status, kms.result) == (2, None)
    assert kms.error == "Failed to process action KMSEncryption: AccessDeniedException: no"
    assert parsed.errors == ("AccessDeniedException: no",)
    assert pair.client.channel.cipher is None
    assert pair.client.state is ClientState.HANDSHAKING


def test_kms_request_without_a_key_id_fails_at_once():
    pair = Pair()
    request = HandshakeRequest(
        "3.3.987.0",
        (
            RequestedClientAction("SessionType", {"SessionType": "Standard_Stream"}),
            RequestedClientAction("KMSEncryption", {}),
        ),
    )
    pair.agent_sends(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
    assert not any(isinstance(e, KmsDataKeyNeeded) for e in pair.events())
    (response,) = pair.to_agent()
    kms = HandshakeResponse.from_json(response.payload).action("KMSEncryption")
    assert kms is not None and kms.status == 2


def test_data_key_of_the_wrong_length_is_rejected_and_changes_nothing():
    pair = Pair()
    pair.agent_sends(shell_request(kms_key_id="alias/k"), PayloadType.HANDSHAKE_REQUEST)
    with pytest.raises(ProtocolError, match="64"):
        pair.client.provide_data_key(b"blob", b"short", pair.now)
    assert pair.client.state is ClientState.AWAITING_DATA_KEY
    pair.client.provide_data_key(b"blob", DATA_KEY, pair.now)
    assert pair.client.state is ClientState.HANDSHAKING


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("EXIT_CODE: 3", 3),
        ("EXIT_CODE: 0", 0),
        ("[prefix] EXIT_CODE: 127\n", 127),
        ("EXIT_CODE: -1", -1),
        ("EXIT_CODE:", None),
        ("", None),
    ],
)
def test_parse_exit_code(text, code):
    assert parse_exit_code(text) == code


def test_legacy_agent_without_handshake_means_shell():
    pair = Pair()
    pair.client.send_size(80, 24, pair.now)  # allowed before anything arrives
    with pytest.raises(ProtocolError, match="awaiting_handshake"):
        pair.client.send_input(b"x", pair.now)
    pair.agent_sends(b"$ ")
    assert pair.events() == [
        SessionStarted("Standard_Stream", {}, "", "", handshake=False),
        OutputReceived(b"$ "),
    ]
    pair.client.send_input(b"exit 3\n", pair.now)
    got = pair.to_agent()
    assert [(m.sequence_number, m.payload) for m in got] == [
        (0, b'{"cols":80,"rows":24}'),
        (1, b"exit 3\n"),
    ]
    pair.agent_sends(b"EXIT_CODE: 3", PayloadType.EXIT_CODE)
    pair.agent.send_message(
        AgentMessage(
            message_type=MessageType.CHANNEL_CLOSED,
            created_date=1,
            payload=ChannelClosed("sess-1", uuid.uuid4(), "now", output="bye").to_json(),
        )
    )
    pair.pump()
    assert pair.events() == [ExitCodeReceived(3, "EXIT_CODE: 3"), SessionEnded("bye")]
    assert pair.client.state is ClientState.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        pair.client.send_input(b"x", pair.now)


def test_stderr_flags_and_other_payloads_become_events():
    pair = Pair()
    pair.agent_sends(b"out")
    pair.agent_sends(b"err", PayloadType.STDERR)
    pair.agent_sends(PortFlag.CONNECT_TO_PORT_ERROR.to_bytes_payload(), PayloadType.FLAG)
    pair.agent_sends(b"\x00\x00\x00\x09", PayloadType.FLAG)
    detail = ConnectError(3, "localhost:9", "connection refused by localhost:9")
    pair.agent_sends(detail.to_flag_payload(), PayloadType.FLAG)
    pair.agent_sends(b"?", PayloadType.ERROR)
    events = pair.events()[1:]
    assert events == [
        OutputReceived(b"out"),
        StdErrReceived(b"err"),
        FlagReceived(PortFlag.CONNECT_TO_PORT_ERROR),
        FlagReceived(9),
        FlagReceived(PortFlag.CONNECT_TO_PORT_ERROR, detail),
        UnknownPayloadReceived(PayloadType.ERROR, b"?"),
    ]
    assert isinstance(events[2].flag, PortFlag)


def test_unparsable_channel_closed_still_ends_the_session():
    pair = Pair()
    frame = AgentMessage(
        message_type=MessageType.CHANNEL_CLOSED, created_date=1, payload=b"{not json"
    ).encode()
    pair.client.receive(frame, pair.now)
    assert pair.events() == [SessionEnded("")]
    pair.client.receive(frame, pair.now)  # ignored once ended
    assert pair.events() == []


def test_malformed_frame_raises_and_changes_nothing():
    pair = Pair()
    with pytest.raises(ProtocolError):
        pair.client.receive(b"\x00" * 10, pair.now)
    assert pair.client.state is ClientState.AWAITING_HANDSHAKE


@pytest.mark.parametrize(
    ("payload_type", "payload", "reason"),
    [
        (PayloadType.HANDSHAKE_COMPLETE, HandshakeComplete().to_json(), "HandshakeComplete"),
        (PayloadType.HANDSHAKE_REQUEST, b"[1]", "HandshakeRequest"),
        (PayloadType.ENC_CHALLENGE_REQUEST, b'{"Challenge":"AA=="}', "data key"),
    ],
)
def test_peer_protocol_violations_fail_the_session(payload_type, payload, reason):
    pair = Pair()
    pair.agent_sends(payload, payload_type)
    (event,) = pair.events()
    assert isinstance(event, SessionFailed)
    assert reason in event.reason
    assert pair.client.state is ClientState.FAILED


def test_second_handshake_request_fails_the_session():
    pair = Pair()
    pair.agent_sends(shell_request(), PayloadType.HANDSHAKE_REQUEST)
    pair.agent_sends(shell_request(), PayloadType.HANDSHAKE_REQUEST)
    assert isinstance(pair.events()[-1], SessionFailed)


def test_caller_moves_out_of_turn_raise():
    pair = Pair()
    with pytest.raises(ProtocolError, match="provide a data key"):
        pair.client.provide_data_key(b"b", DATA_KEY, pair.now)
    with pytest.raises(ProtocolError, match="refuse"):
        pair.client.refuse_kms("no", pair.now)
    with pytest.raises(ProtocolError, match="flag"):
        pair.client.send_flag(PortFlag.TERMINATE_SESSION, pair.now)
    with pytest.raises(ProtocolError, match="out of range"):
        pair.client.send_size(-1, 5, pair.now)


def test_input_is_split_into_reference_sized_messages():
    pair = Pair()
    pair.agent_sends(b"$ ")
    pair.client.send_input(bytes(3000), pair.now)
    assert [len(m.payload) for m in pair.to_agent()] == [1024, 1024, 952]


def test_port_sessions_may_send_larger_messages():
    pair = Pair()
    pair.client.max_input_chunk = 64 * 1024
    pair.agent_sends(b"$ ")
    pair.client.send_input(bytes(100_000), pair.now)
    assert [len(m.payload) for m in pair.to_agent()] == [65536, 100_000 - 65536]


def test_flag_is_sent_big_endian():
    pair = Pair()
    pair.agent_sends(b"$ ")
    pair.client.send_flag(PortFlag.TERMINATE_SESSION, pair.now)
    (message,) = pair.to_agent()
    assert (message.payload_type, message.payload) == (PayloadType.FLAG, b"\x00\x00\x00\x02")


def test_resend_unacked_after_a_lost_connection_delivers_once():
    pair = Pair()
    pair.agent_sends(b"$ ")
    pair.client.send_input(b"one", pair.now)
    pair.client.send_input(b"two", pair.now)
    lost = pair.client.data_to_send()
    assert len(lost) == 2  # never reached the agent
    pair.client.resend_unacked(pair.now)
    assert [m.payload for m in pair.to_agent()] == [b"one", b"two"]
    assert pair.client.channel.unacked_count == 0
    assert pair.client.next_timeout() is None


def test_resent_messages_are_not_sent_again_by_the_next_tick():
    # Regression: resend_unacked left the old retransmission timers live, so every
    # message resent after a reconnect went out twice.
    pair = Pair()
    pair.agent_sends(b"$ ")
    pair.client.send_input(b"one", pair.now)
    pair.client.data_to_send()  # lost with the old socket
    later = pair.now + 5.0  # long past the first timeout
    pair.client.resend_unacked(later)
    assert len(pair.client.data_to_send()) == 1
    pair.client.tick(later)
    assert pair.client.data_to_send() == []
    assert pair.client.next_timeout() > later


def test_retransmission_exhaustion_fails_the_session():
    pair = Pair(channel=DataChannel(Role.CLIENT, max_attempts=2))
    pair.client.send_size(80, 24, pair.now)
    pair.client.data_to_send()
    for _ in range(10):
        deadline = pair.client.next_timeout()
        if deadline is None:
            break
        pair.client.tick(deadline)
    (event,) = pair.events()
    assert isinstance(event, SessionFailed)
    assert "not acknowledged" in event.reason
    assert pair.client.next_timeout() is None


def test_agent_channel_is_refused():
    with pytest.raises(ProtocolError):
        ClientSession("s", channel=DataChannel(Role.AGENT))
