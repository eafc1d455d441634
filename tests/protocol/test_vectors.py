"""The byte vectors shared with the browser's protocol library (tests/web/protocol/).

``build_vectors()`` makes every vector with the Python library: frames with their decoded
fields, malformed frames with the error they must give, payload JSON, an AES-GCM vector,
and whole client transcripts (a shell, a KMS session with its challenge, a legacy agent,
a refused Port session) recorded from ``ClientSession`` against an agent ``DataChannel``
with fixed ids, nonces and clock. The test fails when the library no longer produces
exactly what vectors.json holds; after a deliberate change, write the file again with

    python -m tests.protocol.test_vectors

and the Node tests then check the JavaScript port against the new bytes.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.protocol import (
    Acknowledge,
    AgentMessage,
    ChannelClosed,
    DataChannel,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    OpenDataChannel,
    PayloadType,
    PortFlag,
    ProcessedClientAction,
    ProtocolError,
    RequestedClientAction,
    Role,
    SessionCipher,
    TerminalSize,
    decode,
)
from hatchway.protocol.client_session import (
    SHELL_SESSION_TYPES,
    ClientSession,
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
)
from hatchway.protocol.port import ConnectError
from hatchway.protocol.stream import StreamData

VECTORS = Path(__file__).with_name("vectors.json")

T0 = 1_700_000_000.0
SESSION_ID = "sess-0123456789abcdef0"
TARGET_ID = "i-0123456789abcdef0"
DATA_KEY = bytes(range(64))
CIPHERTEXT_BLOB = b"\x01\x02\x03opaque-kms-ciphertext-blob"
SPEC_ID = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")


def counter_ids(prefix: int) -> Callable[[], uuid.UUID]:
    """Version-4-shaped UUIDs that count up, so every frame is reproducible."""
    numbers = iter(range(1, 10**9))
    return lambda: uuid.UUID(f"{prefix:08x}-0000-4000-8000-{next(numbers):012x}")


def counter_nonces(prefix: int) -> Callable[[int], bytes]:
    numbers = iter(range(1, 10**9))
    return lambda n: bytes([prefix]) + next(numbers).to_bytes(n - 1, "big")


def fields(message: AgentMessage) -> dict[str, Any]:
    """A message's decoded fields as the JavaScript decoder reports them; 64-bit values
    beyond 2**53 are decimal strings (BigInt in JavaScript)."""

    def wide(value: int) -> int | str:
        return value if abs(value) <= 2**53 - 1 else str(value)

    return {
        "messageType": message.message_type,
        "schemaVersion": message.schema_version,
        "createdDate": wide(message.created_date),
        "sequenceNumber": wide(message.sequence_number),
        "flags": wide(message.flags),
        "messageId": str(message.message_id),
        "payloadType": int(message.payload_type),
        "payloadHex": message.payload.hex(),
    }


# --- frames -----------------------------------------------------------------------------


def frame_vectors() -> list[dict[str, Any]]:
    messages = {
        # data-channel.md §2, checked against the reference plugin's encoder and decoder.
        "spec input_stream_data": AgentMessage(
            message_type="input_stream_data",
            created_date=1_700_000_000_000,
            sequence_number=5,
            message_id=SPEC_ID,
            payload_type=1,
            payload=b"ls\r",
        ),
        "agent first output (SYN)": AgentMessage(
            message_type="output_stream_data",
            created_date=1_700_000_000_123,
            sequence_number=0,
            flags=1,
            message_id=uuid.UUID("bdd9e687-e358-4804-9fd7-eeeba4ba8d3e"),
            payload_type=1,
            payload="héllo 🐚\r\n".encode(),
        ),
        "acknowledge": AgentMessage(
            message_type="acknowledge",
            created_date=1_700_000_000_200,
            flags=3,
            message_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
            payload=Acknowledge("output_stream_data", SPEC_ID, 7).to_json(),
        ),
        "channel_closed": AgentMessage(
            message_type="channel_closed",
            created_date=1_700_000_000_300,
            flags=3,
            message_id=uuid.UUID("00000000-0000-4000-8000-000000000002"),
            payload=ChannelClosed(
                SESSION_ID, uuid.UUID(int=3), "2023-11-14T22:13:20.300Z", TARGET_ID, "bye"
            ).to_json(),
        ),
        "start_publication without a created date": AgentMessage(
            message_type="start_publication",
            created_date=0,
            message_id=uuid.UUID("00000000-0000-4000-8000-000000000004"),
        ),
        "64-bit extremes": AgentMessage(
            message_type="output_stream_data",
            created_date=2**64 - 1,
            sequence_number=2**63 - 1,
            flags=2**64 - 1,
            message_id=uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff"),
            payload_type=2**32 - 1,
            payload=bytes(range(256)),
        ),
        "negative sequence number": AgentMessage(
            message_type="output_stream_data",
            created_date=1,
            sequence_number=-3,
            message_id=uuid.UUID(int=0),
            payload_type=4,
            payload=b"\x00",
        ),
    }
    out = []
    for name, message in messages.items():
        wire = message.encode()
        assert decode(wire) == message
        out.append({"name": name, "hex": wire.hex(), "fields": fields(message), "encodes": True})
    # Decode only: other writers pad with NULs and give an empty payload a zero digest.
    padded = bytearray(messages["acknowledge"].encode())
    padded[4:36] = b"acknowledge".ljust(32, b"\x00")
    empty = AgentMessage(message_type="pause_publication", created_date=9, message_id=SPEC_ID)
    zero_digest = bytearray(empty.encode())
    zero_digest[4:36] = b"pause_publication".ljust(32, b"\x00")
    zero_digest[80:112] = bytes(32)
    for name, raw in (("NUL-padded type", padded), ("zero digest on empty payload", zero_digest)):
        out.append(
            {"name": name, "hex": raw.hex(), "fields": fields(decode(bytes(raw))), "encodes": False}
        )
    return out


def bad_frame_vectors() -> list[dict[str, str]]:
    spec = frame_vectors()[0]
    good = bytes.fromhex(spec["hex"])
    mutations: dict[str, tuple[bytes, str]] = {
        "truncated header": (good[:100], "shorter than"),
        "one payload byte missing": (good[:-1], "payload length"),
        "a trailing byte": (good + b"x", "payload length"),
        "header length 16": (b"\x00\x00\x00\x10" + good[4:], "header length 16"),
        "header length past the end": (b"\x00\x00\x01\x00" + good[4:], "points past the end"),
        "blank message type": (good[:4] + b" " * 32 + good[36:], "message type is empty"),
        "non-ASCII message type": (good[:4] + b"\xff" * 32 + good[36:], "not ASCII"),
        "control character in type": (
            good[:4] + b"input\x01stream".ljust(32, b" ") + good[36:],
            "non-printable",
        ),
        "no created date": (good[:40] + bytes(8) + good[48:], "no created date"),
        "payload changed": (good[:-1] + b"X", "digest mismatch"),
        "digest on an empty payload": (
            AgentMessage(message_type="acknowledge", created_date=1, message_id=SPEC_ID).encode()[
                :80
            ]
            + b"\x01" * 32
            + bytes(8),
            "non-empty digest",
        ),
    }
    out = []
    for name, (raw, error) in mutations.items():
        with pytest.raises(ProtocolError, match=error):
            decode(raw)
        out.append({"name": name, "hex": raw.hex(), "error": error})
    return out


# --- payloads ---------------------------------------------------------------------------


def payload_vectors() -> dict[str, Any]:
    kms_result = {"KMSCipherTextKey": "AQID", "KMSCipherTextHash": None}
    detail = ConnectError(3, "localhost:9", "connection refused by localhost:9")
    return {
        "acknowledge": {
            "json": Acknowledge("output_stream_data", SPEC_ID, 7).to_json().decode(),
            "fields": {
                "messageType": "output_stream_data",
                "messageId": str(SPEC_ID),
                "sequenceNumber": 7,
                "isSequential": True,
            },
        },
        "handshakeRequest": {
            "json": HandshakeRequest.build(
                "3.3.987.0",
                "Standard_Stream",
                {"linux": {"commands": "", "runAsElevated": False}},
                kms_key_id="alias/session",
                challenge=b"0123456789abcdef",
            )
            .to_json()
            .decode(),
            "fields": {
                "agentVersion": "3.3.987.0",
                "sessionType": "Standard_Stream",
                "properties": {"linux": {"commands": "", "runAsElevated": False}},
                "kmsKeyId": "alias/session",
            },
        },
        "handshakeResponses": [
            {
                "clientVersion": "1.2.650.0",
                "actions": [a.to_obj() for a in actions],
                "errors": errors,
                "json": HandshakeResponse(
                    "1.2.650.0", tuple(actions), tuple(errors) if errors else None
                )
                .to_json()
                .decode(),
            }
            for actions, errors in (
                ([], None),
                ([ProcessedClientAction("SessionType", 1)], None),
                (
                    [
                        ProcessedClientAction("SessionType", 1),
                        ProcessedClientAction.unsupported("Teleport"),
                    ],
                    ["Unsupported action Teleport"],
                ),
                (
                    [
                        ProcessedClientAction("SessionType", 1),
                        ProcessedClientAction("KMSEncryption", 1, kms_result),
                        ProcessedClientAction("ExitCodeReporting", 1),
                    ],
                    None,
                ),
            )
        ],
        "handshakeComplete": {
            "json": HandshakeComplete(1_234_567, "This session is encrypted using AWS KMS.")
            .to_json()
            .decode(),
            "fields": {
                "timeToCompleteNs": 1_234_567,
                "customerMessage": "This session is encrypted using AWS KMS.",
            },
        },
        "encChallenge": {
            "challengeHex": bytes(range(40)).hex(),
            "json": EncChallengeRequest(bytes(range(40))).to_json().decode(),
        },
        "terminalSize": {"cols": 120, "rows": 40, "json": TerminalSize(120, 40).to_json().decode()},
        "openDataChannel": {
            "token": "tok-<&>-ü",
            "requestId": "a2b1c3d4-0000-4000-8000-000000000001",
            "clientId": "c0ffee00-0000-4000-8000-000000000002",
            "clientVersion": "1.2.650.0",
            "json": OpenDataChannel(
                token="tok-<&>-ü",
                request_id="a2b1c3d4-0000-4000-8000-000000000001",
                client_id="c0ffee00-0000-4000-8000-000000000002",
                client_version="1.2.650.0",
            )
            .to_json()
            .decode(),
        },
        "channelClosed": {
            "json": ChannelClosed(
                SESSION_ID, uuid.UUID(int=3), "2023-11-14T22:13:20.300Z", TARGET_ID, "bye"
            )
            .to_json()
            .decode(),
            "fields": {
                "sessionId": SESSION_ID,
                "messageId": str(uuid.UUID(int=3)),
                "createdDate": "2023-11-14T22:13:20.300Z",
                "destinationId": TARGET_ID,
                "output": "bye",
                "schemaVersion": 1,
            },
        },
        "flags": [{"flag": int(flag), "hex": flag.to_bytes_payload().hex()} for flag in PortFlag],
        "connectErrorFlag": {
            "hex": detail.to_flag_payload().hex(),
            "error": {
                "streamId": detail.stream_id,
                "destination": detail.destination,
                "error": detail.error,
            },
        },
    }


def crypto_vector() -> dict[str, str]:
    nonce = bytes.fromhex("4e4f4e43452d31323334353a")
    client = SessionCipher(DATA_KEY, Role.CLIENT, nonce_source=lambda n: nonce)
    agent = SessionCipher(DATA_KEY, Role.AGENT, nonce_source=lambda n: nonce)
    plaintext = b"ls -la\r"
    return {
        "keyHex": DATA_KEY.hex(),
        "nonceHex": nonce.hex(),
        "plaintextHex": plaintext.hex(),
        # sealed with key[32:64]; the agent opens it
        "clientSealedHex": client.encrypt(plaintext).hex(),
        # sealed with key[0:32]; the client opens it
        "agentSealedHex": agent.encrypt(plaintext).hex(),
    }


# --- transcripts ------------------------------------------------------------------------


def event_json(event: object) -> dict[str, Any]:
    """A ClientSession event in the shape the JavaScript session reports it."""
    match event:
        case HandshakeStarted():
            return {
                "type": "handshakeStarted",
                "agentVersion": event.agent_version,
                "sessionType": event.session_type,
                "properties": event.properties,
                "kmsKeyId": event.kms_key_id,
            }
        case KmsDataKeyNeeded():
            return {
                "type": "kmsDataKeyNeeded",
                "keyId": event.key_id,
                "encryptionContext": event.encryption_context,
            }
        case EncryptionChallengeAnswered():
            return {"type": "challengeAnswered"}
        case SessionStarted():
            return {
                "type": "sessionStarted",
                "sessionType": event.session_type,
                "properties": event.properties,
                "agentVersion": event.agent_version,
                "customerMessage": event.customer_message,
                "handshake": event.handshake,
            }
        case OutputReceived():
            return {"type": "output", "dataHex": event.data.hex()}
        case StdErrReceived():
            return {"type": "stderr", "dataHex": event.data.hex()}
        case ExitCodeReceived():
            return {"type": "exitCode", "code": event.code, "text": event.text}
        case FlagReceived():
            error = event.error
            return {
                "type": "flag",
                "flag": int(event.flag),
                "error": None
                if error is None
                else {
                    "streamId": error.stream_id,
                    "destination": error.destination,
                    "error": error.error,
                },
            }
        case UnknownPayloadReceived():
            return {
                "type": "unknownPayload",
                "payloadType": int(event.payload_type),
                "dataHex": event.data.hex(),
            }
        case SessionEnded():
            return {"type": "ended", "output": event.output}
        case SessionFailed():
            return {"type": "failed", "reason": event.reason}
    raise AssertionError(f"no JSON form for {event!r}")


class Transcript:
    """A Python client and a scripted agent joined by a wire that records every frame.

    Steps, in the order the JavaScript test replays them:
    ``{"from": "agent", "now", "hex"}``: a frame for the client's receive();
    ``{"from": "client", "hex"}``: the next frame the client must have sent;
    ``{"action": ..., "now", ...}``: a call on the client (sendInput, sendSize,
    provideDataKey, refuseKms); ``{"events": [...]}``: what nextEvent() gives by then.
    """

    def __init__(self) -> None:
        self.now = T0
        self.client = ClientSession(
            SESSION_ID,
            TARGET_ID,
            session_types=SHELL_SESSION_TYPES,
            channel=DataChannel(Role.CLIENT, id_source=counter_ids(0xC11E0000)),
        )
        self.agent = DataChannel(Role.AGENT, id_source=counter_ids(0xA6E00000))
        self.steps: list[dict[str, Any]] = []
        self.agent_got: list[StreamData] = []
        self._held: list[bytes] = []

    def tick_clock(self) -> float:
        self.now = round(self.now + 0.013, 3)
        return self.now

    def agent_sends(
        self, payload: bytes, payload_type: int = PayloadType.OUTPUT, *, order: str = ""
    ) -> None:
        """The agent sends one stream message, then the wire settles. ``order`` "swap" holds
        the message back until the next one is sent (reordering); "dup" delivers it twice."""
        self.agent.send(payload, payload_type, now=self.tick_clock())
        if order == "swap":
            self._held = self.agent.data_to_send()
            return
        frames = self.agent.data_to_send()
        if order == "dup":
            frames = frames + frames
        held = self._held
        self._held = []
        self.deliver(frames + held)

    def agent_closes(self, output: str) -> None:
        closed = ChannelClosed(SESSION_ID, uuid.UUID(int=77), "2023-11-14T22:13:20Z", TARGET_ID)
        self.agent.send_message(
            AgentMessage(
                message_type=MessageType.CHANNEL_CLOSED,
                created_date=int(self.tick_clock() * 1000),
                flags=3,
                message_id=uuid.UUID(int=78),
                payload=ChannelClosed(
                    closed.session_id, closed.message_id, closed.created_date, TARGET_ID, output
                ).to_json(),
            )
        )
        self.deliver(self.agent.data_to_send())

    def deliver(self, frames: list[bytes]) -> None:
        """Frames to the client, its answers to the agent, until the wire is quiet."""
        while frames:
            for frame in frames:
                self.steps.append({"from": "agent", "now": self.now, "hex": frame.hex()})
                self.client.receive(frame, self.now)
                self.client_frames()
            self.record_events()
            frames = self.agent.data_to_send()

    def client_frames(self) -> None:
        for frame in self.client.data_to_send():
            self.steps.append({"from": "client", "hex": frame.hex()})
            self.agent.receive(frame, now=self.now)
            while (event := self.agent.next_event()) is not None:
                if isinstance(event, StreamData):
                    self.agent_got.append(event)

    def record_events(self) -> None:
        events = []
        while (event := self.client.next_event()) is not None:
            events.append(event_json(event))
        if events:
            self.steps.append({"events": events})

    def act(self, action: str, **args: Any) -> None:
        now = self.tick_clock()
        step: dict[str, Any] = {"action": action, "now": now}
        if action == "sendInput":
            step["dataHex"] = args["data"].hex()
            self.client.send_input(args["data"], now)
        elif action == "sendSize":
            step |= {"cols": args["cols"], "rows": args["rows"]}
            self.client.send_size(args["cols"], args["rows"], now)
        elif action == "provideDataKey":
            step |= {"ciphertextBlobHex": CIPHERTEXT_BLOB.hex(), "plaintextHex": DATA_KEY.hex()}
            self.client.provide_data_key(CIPHERTEXT_BLOB, DATA_KEY, now)
            cipher = self.client.channel.cipher
            assert cipher is not None
            cipher._nonce_source = counter_nonces(0xC1)  # reproducible client nonces
        elif action == "refuseKms":
            step["error"] = args["error"]
            self.client.refuse_kms(args["error"], now)
        self.steps.append(step)
        self.client_frames()
        self.deliver(self.agent.data_to_send())
        self.record_events()

    def received(self) -> list[tuple[int, bytes]]:
        got, self.agent_got = self.agent_got, []
        return [(int(e.payload_type), e.payload) for e in got]


def shell_request(*extra: RequestedClientAction, kms: bool = False) -> bytes:
    actions = [RequestedClientAction("SessionType", {"SessionType": "Standard_Stream"})]
    if kms:
        actions.append(
            RequestedClientAction(
                "KMSEncryption",
                {"KMSKeyId": "alias/session", "Challenge": "MDEyMzQ1Njc4OWFiY2RlZg=="},
            )
        )
    return HandshakeRequest("3.3.987.0", (*actions, *extra)).to_json()


def shell_transcript() -> list[dict[str, Any]]:
    t = Transcript()
    t.agent_sends(
        shell_request(
            RequestedClientAction("ExitCodeReporting"),
            RequestedClientAction("Teleport"),
            RequestedClientAction("PseudoTerminal"),  # a terminal keeps its pty
        ),
        PayloadType.HANDSHAKE_REQUEST,
    )
    (response,) = t.received()
    assert response[0] == PayloadType.HANDSHAKE_RESPONSE
    t.agent_sends(HandshakeComplete(1234, "Hello there").to_json(), PayloadType.HANDSHAKE_COMPLETE)
    t.act("sendSize", cols=120, rows=40)
    t.act("sendInput", data=b"ls\r")
    assert t.received() == [(3, b'{"cols":120,"rows":40}'), (1, b"ls\r")]
    t.agent_sends(b"file-a  ", order="swap")  # arrives after the next one
    t.agent_sends("file-ü 🐚\r\n".encode(), order="dup")
    t.agent_sends(b"warning\n", PayloadType.STDERR)
    t.act("sendInput", data=bytes(range(256)) * 12)  # a paste: 3072 bytes, three messages
    assert [len(p) for _, p in t.received()] == [1024, 1024, 1024]
    t.agent_sends(PortFlag.TERMINATE_SESSION.to_bytes_payload(), PayloadType.FLAG)
    t.agent_sends(b"EXIT_CODE: 3", PayloadType.EXIT_CODE)
    t.agent_closes("")
    return t.steps


def kms_transcript() -> list[dict[str, Any]]:
    t = Transcript()
    t.agent_sends(shell_request(kms=True), PayloadType.HANDSHAKE_REQUEST)
    assert t.received() == []  # the handshake waits for the data key
    t.act("provideDataKey")
    ((kind, body),) = t.received()
    assert kind == PayloadType.HANDSHAKE_RESPONSE
    assert HandshakeResponse.from_json(body).kms_ciphertext_key == CIPHERTEXT_BLOB
    agent_cipher = SessionCipher(DATA_KEY, Role.AGENT, nonce_source=counter_nonces(0xA6))
    t.agent.set_cipher(agent_cipher)
    secret = bytes(range(100, 164))
    t.agent_sends(
        EncChallengeRequest(agent_cipher.encrypt(secret)).to_json(),
        PayloadType.ENC_CHALLENGE_REQUEST,
    )
    ((kind, body),) = t.received()
    assert kind == PayloadType.ENC_CHALLENGE_RESPONSE
    assert agent_cipher.check_challenge(secret, EncChallengeResponse.from_json(body).challenge)
    t.agent_sends(
        HandshakeComplete(5, "This session is encrypted using AWS KMS.").to_json(),
        PayloadType.HANDSHAKE_COMPLETE,
    )
    t.act("sendSize", cols=80, rows=24)
    t.agent_sends(b"$ ")
    t.act("sendInput", data=b"whoami\r")
    assert t.received() == [(3, b'{"cols":80,"rows":24}'), (1, b"whoami\r")]
    t.agent_sends(b"root\r\n")
    t.agent_sends(b"EXIT_CODE: 0", PayloadType.EXIT_CODE)
    t.agent_closes("bye")
    return t.steps


def legacy_transcript() -> list[dict[str, Any]]:
    t = Transcript()
    t.act("sendSize", cols=100, rows=30)  # allowed before anything arrives
    t.agent_sends(b"$ ")
    t.act("sendInput", data=b"exit\r")
    t.agent_closes("")
    return t.steps


def refused_kms_transcript() -> list[dict[str, Any]]:
    t = Transcript()
    t.agent_sends(shell_request(kms=True), PayloadType.HANDSHAKE_REQUEST)
    t.act("refuseKms", error="AccessDeniedException: not allowed to use alias/session")
    t.agent_closes("Encountered error while initiating handshake. KMSEncryption failed")
    return t.steps


def port_transcript() -> list[dict[str, Any]]:
    t = Transcript()
    request = HandshakeRequest.build("3.3.987.0", "Port", {"portNumber": "22"})
    t.agent_sends(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
    t.agent_sends(HandshakeComplete().to_json(), PayloadType.HANDSHAKE_COMPLETE)
    return t.steps


def build_vectors() -> dict[str, Any]:
    return {
        "comment": "Generated by tests/protocol/test_vectors.py from the Python library; "
        "do not edit by hand (python -m tests.protocol.test_vectors writes it again).",
        "frames": frame_vectors(),
        "badFrames": bad_frame_vectors(),
        "messageIdSwap": {
            "uuid": "bdd9e687-e358-4804-9fd7-eeeba4ba8d3e",
            "wireHex": "9fd7eeeba4ba8d3ebdd9e687e3584804",
        },
        "payloads": payload_vectors(),
        "crypto": crypto_vector(),
        "session": {
            "sessionId": SESSION_ID,
            "targetId": TARGET_ID,
            "dataKeyHex": DATA_KEY.hex(),
        },
        "transcripts": {
            "shell": shell_transcript(),
            "kms": kms_transcript(),
            "legacy": legacy_transcript(),
            "refusedKms": refused_kms_transcript(),
            "port": port_transcript(),
        },
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


def test_python_still_produces_the_shared_vectors() -> None:
    expected = json.loads(VECTORS.read_text(encoding="utf-8"))
    actual = json.loads(render(build_vectors()))
    for key in expected:
        assert actual[key] == expected[key], f"{key} drifted from vectors.json"
    assert actual.keys() == expected.keys()


def test_the_transcripts_cover_every_step_kind() -> None:
    kinds: Iterator[str] = (
        step.get("from") or step.get("action") or "events"
        for steps in build_vectors()["transcripts"].values()
        for step in steps
    )
    assert {"agent", "client", "events", "sendInput", "sendSize", "provideDataKey"} <= set(kinds)


if __name__ == "__main__":
    VECTORS.write_text(render(build_vectors()), encoding="utf-8")
    print(f"wrote {VECTORS}", file=sys.stderr)
