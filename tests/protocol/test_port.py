import pytest

from hatchway.protocol import ProtocolError
from hatchway.protocol.port import (
    ConnectError,
    Destination,
    PortMode,
    agent_compare_versions,
    agent_port_mode,
    agent_sends_keepalive,
    client_port_mode,
    denied_address,
    destination_from,
    plugin_version_greater,
)

LPF = {"type": "LocalPortForwarding", "portNumber": "80"}


@pytest.mark.parametrize(
    ("version", "than", "greater"),
    [
        ("3.0.197.0", "3.0.196.0", True),
        ("3.0.196.0", "3.0.196.0", False),
        ("3.1.0", "3.0.196.0", False),  # another number of parts is never greater
        ("3.x.1.0", "3.0.196.0", False),
        ("10.0.0.0", "3.0.196.0", True),
    ],
)
def test_the_plugins_version_test(version, than, greater):
    assert plugin_version_greater(version, than) is greater


@pytest.mark.parametrize(
    ("this", "other", "sign"),
    [
        ("1.2.650.0", "1.1.70", 1),
        ("1.1.70", "1.1.70", 0),
        ("1.1.7", "1.1.70", -1),
        ("1.1.70.0", "1.1.70", 1),  # strict: the longer one is greater
        ("pyssm-client/0.1.0", "1.1.70", 1),  # compared as text: 'p' > '1'
        ("1.2.331.0", "1.2.331.0", 0),
        ("1.2.0.0", "1.2.331.0", -1),
    ],
)
def test_the_agents_version_order(this, other, sign):
    result = agent_compare_versions(this, other)
    assert (result > 0) - (result < 0) == sign


def test_modes_on_each_side():
    assert client_port_mode(LPF, "3.3.987.0") is PortMode.MUX
    assert client_port_mode(LPF, "3.0.196.0") is PortMode.BASIC
    assert client_port_mode({"portNumber": "22"}, "3.3.987.0") is PortMode.STREAM
    assert agent_port_mode(LPF, "1.2.650.0") is PortMode.MUX
    assert agent_port_mode(LPF, "pyssm-client/0.1.0") is PortMode.MUX
    assert agent_port_mode(LPF, "1.0.0.0") is PortMode.BASIC
    assert agent_port_mode({"portNumber": "22"}, "1.2.650.0") is PortMode.STREAM


def test_keepalive_only_for_old_clients():
    assert agent_sends_keepalive("1.2.0.0")  # a source build of the reference plugin
    assert agent_sends_keepalive("1.2.331.0")
    assert not agent_sends_keepalive("1.2.650.0")


def test_destinations_and_the_agents_errors():
    assert destination_from(LPF) == Destination("localhost", 80, remote=False)
    assert destination_from({"portNumber": "5432", "host": "db.internal"}) == Destination(
        "db.internal", 5432, remote=True
    )
    assert str(Destination("::1", 22, remote=True)) == "[::1]:22"
    with pytest.raises(ProtocolError) as empty:
        destination_from({"type": "LocalPortForwarding"})
    assert str(empty.value) == (
        "Port number is empty in session properties. map[type:LocalPortForwarding]"
    )
    with pytest.raises(ProtocolError) as listed:
        destination_from({"portNumber": ["1"]})
    assert str(listed.value) == (
        "Unable to remarshal session properties. json: cannot unmarshal array into Go "
        "struct field PortParameters.portNumber of type string"
    )
    with pytest.raises(ProtocolError, match="not a port"):
        destination_from({"portNumber": "70000"})


@pytest.mark.parametrize(
    ("address", "denied"),
    [
        ("169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("::ffff:169.254.169.254", True),
        ("169.254.169.123", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("not-an-ip", False),
    ],
)
def test_metadata_addresses_are_denied(address, denied):
    assert denied_address(address) is denied


def test_connect_errors_ride_after_the_flag():
    error = ConnectError(5, "localhost:9", "connection refused by localhost:9")
    payload = error.to_flag_payload()
    assert payload[:4] == b"\x00\x00\x00\x03"
    assert ConnectError.from_flag_payload(payload) == error
    assert ConnectError.from_flag_payload(b"\x00\x00\x00\x03") is None
    assert ConnectError.from_flag_payload(b"\x00\x00\x00\x03{bad") is None
    assert ConnectError.from_flag_payload(b"\x00\x00\x00\x02{}") is None
