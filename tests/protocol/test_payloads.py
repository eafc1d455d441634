import json
import uuid

import pytest

from hatchway.protocol import (
    Acknowledge,
    ActionStatus,
    ChannelClosed,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    OpenDataChannel,
    PortFlag,
    ProcessedClientAction,
    ProtocolError,
    TerminalSize,
)

ID = uuid.UUID("bdd9e687-e358-4804-9fd7-eeeba4ba8d3e")


def test_acknowledge_is_byte_exact_with_the_plugin():
    ack = Acknowledge("output_stream_data", ID, 7)
    assert ack.to_json() == (
        b'{"AcknowledgedMessageType":"output_stream_data",'
        b'"AcknowledgedMessageId":"bdd9e687-e358-4804-9fd7-eeeba4ba8d3e",'
        b'"AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}'
    )
    assert Acknowledge.from_json(ack.to_json()) == ack


def test_acknowledge_from_pyssm_with_spaces():
    raw = json.dumps(
        {
            "AcknowledgedMessageType": "input_stream_data",
            "AcknowledgedMessageId": str(ID),
            "AcknowledgedMessageSequenceNumber": 0,
            "IsSequentialMessage": True,
        }
    ).encode()
    assert Acknowledge.from_json(raw).sequence_number == 0


def test_channel_closed_round_trip_and_sparse_input():
    closed = ChannelClosed("s-1", ID, "2024-01-01T00:00:00Z", "mi-0123", "bye")
    assert ChannelClosed.from_json(closed.to_json()) == closed
    sparse = ChannelClosed.from_json(b'{"SessionId":"s-2","MessageType":"channel_closed"}')
    assert sparse.session_id == "s-2" and sparse.output == ""


def test_handshake_request_as_the_agent_sends_it():
    raw = (
        b'{"AgentVersion":"3.3.0.0","RequestedClientActions":['
        b'{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream",'
        b'"Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":'
        b'{"KMSKeyId":"alias/example","Challenge":"AAECAwQFBgcICQoLDA0ODw=="}}]}'
    )
    req = HandshakeRequest.from_json(raw)
    assert req.agent_version == "3.3.0.0"
    assert req.session_type == "Standard_Stream"
    assert req.kms_key_id == "alias/example"
    assert req.session_properties == {}
    built = HandshakeRequest.build(
        "3.3.0.0", "Standard_Stream", None, "alias/example", bytes(range(16))
    )
    assert built.to_json() == raw


def test_handshake_response_is_byte_exact_with_the_plugin():
    resp = HandshakeResponse(
        "1.2.0.0",
        (
            ProcessedClientAction("SessionType", ActionStatus.SUCCESS),
            ProcessedClientAction(
                "KMSEncryption",
                ActionStatus.SUCCESS,
                {"KMSCipherTextKey": "AQID", "KMSCipherTextHash": None},
            ),
        ),
    )
    assert resp.to_json() == (
        b'{"ClientVersion":"1.2.0.0","ProcessedClientActions":['
        b'{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},'
        b'{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":'
        b'{"KMSCipherTextKey":"AQID","KMSCipherTextHash":null},"Error":""}],"Errors":null}'
    )
    parsed = HandshakeResponse.from_json(resp.to_json())
    assert parsed == resp
    assert parsed.kms_ciphertext_key == b"\x01\x02\x03"


def test_unsupported_action_quirk():
    action = ProcessedClientAction.unsupported("Teleport")
    assert action.to_obj() == {
        "ActionType": "Teleport",
        "ActionStatus": 0,
        "ActionResult": 3,
        "Error": "Unsupported action Teleport",
    }
    assert not action.succeeded


@pytest.mark.parametrize("version", ['"1.2.0.0"', '"pyssm-client/0.2"', "1", '"dev"'])
def test_client_version_need_not_be_numeric(version):
    raw = f'{{"ClientVersion":{version},"ProcessedClientActions":[],"Errors":[]}}'.encode()
    assert HandshakeResponse.from_json(raw).client_version == json.loads(version).__str__()


def test_handshake_complete_and_challenges():
    done = HandshakeComplete(1_500_000, "This session is encrypted using AWS KMS.")
    assert done.to_json() == (
        b'{"HandshakeTimeToComplete":1500000,'
        b'"CustomerMessage":"This session is encrypted using AWS KMS."}'
    )
    assert HandshakeComplete.from_json(done.to_json()) == done
    req = EncChallengeRequest(b"\x00" * 64)
    assert EncChallengeRequest.from_json(req.to_json()) == req
    assert EncChallengeResponse.from_json(req.to_json()) == EncChallengeResponse(b"\x00" * 64)
    with pytest.raises(ProtocolError, match="base64"):
        EncChallengeResponse.from_json(b'{"Challenge":"***"}')


def test_terminal_size():
    assert TerminalSize(80, 24).to_json() == b'{"cols":80,"rows":24}'
    assert TerminalSize.from_json(b'{"cols": 300, "rows": 100}') == TerminalSize(300, 100)
    for bad in (b'{"cols":-1,"rows":2}', b'{"cols":"80","rows":24}', b'{"cols":true,"rows":1}'):
        with pytest.raises(ProtocolError):
            TerminalSize.from_json(bad)


def test_port_flags_are_four_bytes_big_endian():
    assert PortFlag.DISCONNECT_TO_PORT.to_bytes_payload() == b"\x00\x00\x00\x01"
    assert PortFlag.from_payload(b"\x00\x00\x00\x03") is PortFlag.CONNECT_TO_PORT_ERROR
    with pytest.raises(ProtocolError):
        PortFlag.from_payload(b"\x00\x00\x00\x09")
    with pytest.raises(ProtocolError):
        PortFlag.from_payload(b"\x01")


def test_open_data_channel_as_the_plugin_sends_it():
    raw = (
        '{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t\\u003c",'
        '"ClientId":"c","ClientVersion":"1.2.0.0"}'
    )
    msg = OpenDataChannel.from_json(raw)
    assert msg.token == "t<" and msg.client_id == "c" and msg.client_version == "1.2.0.0"
    assert OpenDataChannel("t<", "r", "c", "1.2.0.0").to_json() == (
        b'{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t<",'
        b'"ClientId":"c","ClientVersion":"1.2.0.0"}'
    )


def test_open_data_channel_variants():
    assert OpenDataChannel.from_json('{"MessageSchemaVersion":1,"TokenValue":"t"}').token == "t"
    old = OpenDataChannel.from_json('{"MessageSchemaVersion":"1.0","TokenValue":"t"}')
    assert old.client_version == ""
    agent = OpenDataChannel.from_json(
        '{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t",'
        '"ClientInstanceId":"mi-0123456789abcdef0","ClientId":""}'
    )
    assert agent.client_instance_id == "mi-0123456789abcdef0"
    for bad in ('{"MessageSchemaVersion":"2.0","TokenValue":"t"}', '{"TokenValue":""}', "[]", "{"):
        with pytest.raises(ProtocolError):
            OpenDataChannel.from_json(bad)
