import pytest
from hypothesis import given
from hypothesis import strategies as st

from hatchway.protocol import ProtocolError
from hatchway.protocol.smux import (
    HEADER_SIZE,
    Command,
    Frame,
    FrameReader,
    KeepAlive,
    SmuxSession,
    StreamData,
    StreamEnded,
    StreamOpened,
    WindowUpdate,
)


def events(session):
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


def test_frame_layout_is_little_endian():
    # SYN for stream 3, as the plugin sends first (data-channel.md §5.2).
    assert Frame(Command.SYN, 3).encode() == bytes.fromhex("0100000003000000")
    assert Frame(Command.PSH, 3, b"hello-0\n").encode() == (
        bytes.fromhex("0102080003000000") + b"hello-0\n"
    )


def test_client_stream_ids_start_at_3_and_are_odd():
    client = SmuxSession(client=True)
    assert [client.open_stream(), client.open_stream(), client.open_stream()] == [3, 5, 7]


def test_conversation_between_client_and_server():
    client, server = SmuxSession(client=True), SmuxSession(client=False)
    sid = client.open_stream()
    client.send(sid, b"GET / HTTP/1.0\r\n\r\n")
    server.receive_data(client.data_to_send())
    assert events(server) == [StreamOpened(3), StreamData(3, b"GET / HTTP/1.0\r\n\r\n")]
    server.send(sid, b"HTTP/1.0 200 OK\r\n\r\n")
    server.close_stream(sid)
    client.receive_data(server.data_to_send())
    assert events(client) == [StreamData(3, b"HTTP/1.0 200 OK\r\n\r\n"), StreamEnded(3)]
    client.close_stream(sid)
    client.close_stream(sid)  # twice is harmless
    server.receive_data(client.data_to_send())
    assert events(server) == [StreamEnded(3)]
    assert sid not in server.streams and sid not in client.streams


@given(st.binary(min_size=0, max_size=200_000), st.lists(st.integers(1, 3000), min_size=1))
def test_frames_split_anywhere_reassemble(data, cuts):
    client, server = SmuxSession(client=True), SmuxSession(client=False)
    sid = client.open_stream()
    client.send(sid, data)
    client.close_stream(sid)
    wire = client.data_to_send()
    pos, i = 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        server.receive_data(wire[pos : pos + step])
        pos, i = pos + step, i + 1
    got = events(server)
    assert got[0] == StreamOpened(sid) and got[-1] == StreamEnded(sid)
    assert b"".join(e.data for e in got if isinstance(e, StreamData)) == data
    assert all(len(e.data) <= 32768 for e in got if isinstance(e, StreamData))


def test_illegal_moves_are_protocol_errors():
    client = SmuxSession(client=True)
    sid = client.open_stream()
    client.close_stream(sid)
    with pytest.raises(ProtocolError, match="cannot send data in state local closed"):
        client.send(sid, b"late")
    with pytest.raises(ProtocolError, match="not open"):
        client.send(99, b"x")


def test_peer_misbehaviour():
    server = SmuxSession(client=False)
    with pytest.raises(ProtocolError, match="version"):
        server.receive_data(bytes.fromhex("0200000003000000"))
    server = SmuxSession(client=False)
    with pytest.raises(ProtocolError, match="unknown command"):
        server.receive_data(bytes.fromhex("0109000003000000"))
    server = SmuxSession(client=False)
    with pytest.raises(ProtocolError, match="ours to number"):
        server.receive_data(Frame(Command.SYN, 4).encode())
    # Data for an unknown stream, or after FIN, is dropped the way the library drops it.
    server = SmuxSession(client=False)
    server.receive_data(Frame(Command.PSH, 9, b"x").encode())
    server.receive_data(Frame(Command.SYN, 3).encode() + Frame(Command.FIN, 3).encode())
    server.receive_data(Frame(Command.PSH, 3, b"after fin").encode())
    assert events(server) == [StreamOpened(3), StreamEnded(3)]
    assert server.ignored_frames == 2


def test_keepalive_and_version_2_window_updates():
    a, b = SmuxSession(client=True, version=2), SmuxSession(client=False, version=2)
    sid = a.open_stream()
    a.keepalive()
    a.window_update(sid, 100, 262144)
    b.receive_data(a.data_to_send())
    assert events(b) == [StreamOpened(sid), KeepAlive(), WindowUpdate(sid, 100, 262144)]
    with pytest.raises(ProtocolError):
        SmuxSession(client=True).window_update(3, 1, 1)


def test_reader_keeps_at_most_one_partial_frame():
    reader = FrameReader()
    assert reader.feed(bytes.fromhex("0102ffff03")) == []
    assert reader.pending_bytes == 5


def test_data_to_send_can_be_taken_in_parts():
    session = SmuxSession(client=True)
    sid = session.open_stream()
    session.send(sid, b"x" * 100)
    whole = HEADER_SIZE + HEADER_SIZE + 100
    assert session.bytes_to_send == whole
    first = session.data_to_send(10)
    assert len(first) == 10 and session.bytes_to_send == whole - 10
    rest = session.data_to_send()
    server = SmuxSession(client=False)
    server.receive_data(first + rest)
    assert server.next_event() == StreamOpened(sid)
    assert server.next_event() == StreamData(sid, b"x" * 100)
