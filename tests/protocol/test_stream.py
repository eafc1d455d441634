import itertools
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hatchway.protocol import (
    Acknowledge,
    AgentMessage,
    FlowControlError,
    MessageType,
    PayloadType,
    ProtocolError,
    Role,
    SessionCipher,
    decode,
)
from hatchway.protocol.stream import (
    MAX_RTO,
    ChannelClosedReceived,
    ChannelFailed,
    DataChannel,
    OtherMessage,
    PublicationPaused,
    PublicationResumed,
    RttEstimator,
    StreamData,
)

T0 = 1_700_000_000.0


def drain(channel):
    events = []
    while (event := channel.next_event()) is not None:
        events.append(event)
    return events


def stream_bytes(events):
    return b"".join(e.payload for e in events if isinstance(e, StreamData))


def acks_in(frames):
    return [
        Acknowledge.from_json(decode(f).payload)
        for f in frames
        if decode(f).message_type == "acknowledge"
    ]


def test_sequence_numbers_and_message_types():
    client = DataChannel(Role.CLIENT)
    agent = DataChannel(Role.AGENT)
    assert [client.send(b"a", now=T0), client.send(b"b", now=T0)] == [0, 1]
    frames = [decode(f) for f in client.data_to_send()]
    assert [(m.message_type, m.sequence_number, m.flags) for m in frames] == [
        ("input_stream_data", 0, 0),
        ("input_stream_data", 1, 0),
    ]
    agent.send(b"x", now=T0)
    agent.send(b"y", now=T0)
    first, second = (decode(f) for f in agent.data_to_send())
    assert (first.message_type, first.flags, second.flags) == ("output_stream_data", 1, 0)
    assert first.created_date == int(T0 * 1000)


def test_acks_are_sent_for_what_arrives_and_stop_retransmission():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    client.send(b"hello", now=T0)
    for frame in client.data_to_send():
        agent.receive(frame, now=T0 + 0.05)
    assert stream_bytes(drain(agent)) == b"hello"
    (ack_frame,) = agent.data_to_send()
    ack_msg = decode(ack_frame)
    assert (ack_msg.message_type, ack_msg.sequence_number, ack_msg.flags, ack_msg.payload_type) == (
        "acknowledge",
        0,
        3,
        0,
    )
    ack = Acknowledge.from_json(ack_msg.payload)
    assert (ack.message_type, ack.sequence_number) == ("input_stream_data", 0)
    client.receive(ack_frame, now=T0 + 0.05)
    assert client.unacked_count == 0
    assert client.next_timeout() is None
    client.tick(T0 + 10)
    assert client.data_to_send() == []


def test_rto_follows_the_spec_formula():
    est = RttEstimator()
    assert (est.rtt, est.rttvar, est.rto) == (0.1, 0.0, 0.2)
    est.sample(0.02)
    assert est.rttvar == pytest.approx(0.02)
    assert est.rtt == pytest.approx(0.09)
    assert est.rto == pytest.approx(0.09 + 0.08)
    for _ in range(50):
        est.sample(0.001)
    assert est.rto == pytest.approx(est.rtt + 0.01, abs=1e-3)  # the 10 ms floor on the variation
    est.sample(30.0)
    assert est.rto == MAX_RTO


def test_retransmission_backs_off_and_is_bounded():
    client = DataChannel(Role.CLIENT, max_attempts=5)
    client.send(b"lost", now=T0)
    original = client.data_to_send()
    resend_times = []
    now = T0
    while now < T0 + 60:
        now += 0.05
        client.tick(now)
        frames = client.data_to_send()
        if frames:
            assert frames == original  # identical bytes: same id, date and seq
            resend_times.append(round(now - T0, 2))
    assert len(resend_times) == 4
    assert resend_times[0] == pytest.approx(0.25)  # first RTO is 200 ms
    gaps = [b - a for a, b in itertools.pairwise(resend_times)]
    assert gaps == sorted(gaps)
    assert isinstance(drain(client)[-1], ChannelFailed)


def test_duplicates_are_dropped_and_acked_again():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    agent.send(b"once", now=T0)
    (frame,) = agent.data_to_send()
    client.receive(frame, now=T0)
    client.receive(frame, now=T0)
    assert stream_bytes(drain(client)) == b"once"
    assert [a.sequence_number for a in acks_in(client.data_to_send())] == [0, 0]


def test_out_of_order_messages_are_acked_at_once_and_delivered_in_order():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    for part in (b"0", b"1", b"2", b"3"):
        agent.send(part, now=T0)
    f0, f1, f2, f3 = agent.data_to_send()
    for frame in (f3, f2):
        client.receive(frame, now=T0)
    assert drain(client) == []
    assert [a.sequence_number for a in acks_in(client.data_to_send())] == [3, 2]
    client.receive(f0, now=T0)
    assert stream_bytes(drain(client)) == b"0"
    client.receive(f1, now=T0)
    assert stream_bytes(drain(client)) == b"123"


def test_send_buffer_is_bounded_when_the_peer_never_acks():
    client = DataChannel(Role.CLIENT, send_buffer_bytes=10_000, send_buffer_messages=100)
    sent = 0
    with pytest.raises(FlowControlError):
        for _ in range(1000):
            client.send(b"x" * 1000, now=T0)
            sent += 1
    assert sent == 10
    assert client.send_capacity == 0
    assert client.buffered_bytes == 10_000


def test_reorder_buffer_is_bounded_and_unacked_overflow_is_resent_later():
    client = DataChannel(Role.CLIENT, reorder_messages=2)
    agent = DataChannel(Role.AGENT)
    for i in range(5):
        agent.send(bytes([i]), now=T0)
    frames = agent.data_to_send()
    for frame in frames[1:]:
        client.receive(frame, now=T0)
    acked = [a.sequence_number for a in acks_in(client.data_to_send())]
    assert acked == [1, 2]  # 3 and 4 did not fit, so they are not acked
    client.receive(frames[0], now=T0)
    assert stream_bytes(drain(client)) == b"\x00\x01\x02"
    client.receive(frames[3], now=T0)
    client.receive(frames[4], now=T0)
    assert stream_bytes(drain(client)) == b"\x03\x04"


def test_undelivered_data_stops_being_acked_until_the_consumer_pulls_it():
    client = DataChannel(Role.CLIENT, undelivered_bytes=2500)
    agent = DataChannel(Role.AGENT)
    for _ in range(4):
        agent.send(b"z" * 1000, now=T0)
    for frame in agent.data_to_send():
        client.receive(frame, now=T0)
    acks = client.data_to_send()
    assert len(acks_in(acks)) == 2
    for ack in acks:
        agent.receive(ack, now=T0)
    assert len(stream_bytes(drain(client))) == 2000
    for later in (T0 + 1, T0 + 2):  # one resend per RTO: the oldest first
        agent.tick(later)
        for frame in agent.data_to_send():
            client.receive(frame, now=later)
    assert len(stream_bytes(drain(client))) == 2000


def test_pause_and_start_publication_hold_and_release_sending():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    client.pause_peer(now=T0)
    client.pause_peer(now=T0)  # idempotent
    (pause,) = client.data_to_send()
    assert decode(pause).message_type == "pause_publication"
    agent.receive(pause, now=T0)
    assert drain(agent) == [PublicationPaused()]
    agent.send(b"held", now=T0)
    assert agent.data_to_send() == []
    assert agent.unacked_count == 1
    client.resume_peer(now=T0)
    agent.receive(client.data_to_send()[0], now=T0)
    assert drain(agent) == [PublicationResumed()]
    (frame,) = agent.data_to_send()
    assert decode(frame).payload == b"held"


def test_channel_closed_and_other_messages_become_events():
    client = DataChannel(Role.CLIENT)
    state = AgentMessage(message_type="agent_session_state", created_date=1, payload=b"{}")
    client.receive(state.encode(), now=T0)
    closed = AgentMessage(
        message_type=MessageType.CHANNEL_CLOSED,
        created_date=1,
        flags=3,
        payload=b'{"SessionId":"s","Output":"bye","MessageType":"channel_closed"}',
    )
    client.receive(closed.encode(), now=T0)
    other, done = drain(client)
    assert isinstance(other, OtherMessage) and other.message == state
    assert isinstance(done, ChannelClosedReceived) and done.closed.output == "bye"
    with pytest.raises(ProtocolError):
        client.send(b"late", now=T0)


def test_malformed_frames_raise_and_leave_the_channel_usable():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    with pytest.raises(ProtocolError):
        client.receive(b"garbage", now=T0)
    bad_ack = AgentMessage(message_type="acknowledge", created_date=1, payload=b"{")
    with pytest.raises(ProtocolError):
        client.receive(bad_ack.encode(), now=T0)
    agent.send(b"fine", now=T0)
    client.receive(agent.data_to_send()[0], now=T0)
    assert stream_bytes(drain(client)) == b"fine"


def fill(channel, chunk, payload_type=PayloadType.OUTPUT):
    """Send all the room ``capacity`` offers, in ``chunk``-byte messages, until it is 0."""
    for _ in range(10_000):
        room = channel.capacity(chunk, payload_type)
        if room == 0:
            return
        for start in range(0, room, chunk):
            channel.send(b"x" * min(chunk, room - start), payload_type, now=T0)
    raise AssertionError("the send buffer never filled")


@given(
    limit=st.integers(1, 50_000),
    messages=st.integers(1, 50),
    chunk=st.integers(1, 5_000),
    encrypted=st.booleans(),
    payload_type=st.sampled_from([PayloadType.OUTPUT, PayloadType.SIZE]),
)
def test_the_room_offered_is_the_room_send_takes(limit, messages, chunk, encrypted, payload_type):
    """Sealing makes each message 28 bytes longer than what the caller gave: the room
    offered allows for it, so sending all of it never raises FlowControlError."""
    channel = DataChannel(Role.AGENT, send_buffer_bytes=limit, send_buffer_messages=messages)
    if encrypted:
        channel.set_cipher(SessionCipher(bytes(range(64)), Role.AGENT))
    channel.send(b"first", now=T0)  # an empty buffer takes any one message
    fill(channel, chunk, payload_type)
    assert channel.buffered_bytes <= max(limit, len(b"first") + 28 * encrypted)
    assert channel.unacked_count <= messages
    with pytest.raises(FlowControlError):
        channel.send(b"x" * (chunk + 28), payload_type, now=T0)


def test_an_encrypted_channel_fills_its_send_buffer_with_ciphertext():
    agent = DataChannel(Role.AGENT, send_buffer_bytes=8 * 1024 * 1024)
    agent.set_cipher(SessionCipher(bytes(range(64)), Role.AGENT))
    assert agent.send_capacity == 8 * 1024 * 1024 - 28
    assert agent.capacity(65536, PayloadType.FLAG) == 8 * 1024 * 1024  # flags are not sealed
    agent.send(b"x" * 1000, now=T0)
    fill(agent, 65536)
    assert agent.buffered_bytes == 8 * 1024 * 1024  # full, and not one byte over


def test_encryption_applies_to_the_right_payload_types_only():
    key = bytes(range(64))
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    client.set_cipher(SessionCipher(key, Role.CLIENT))
    agent.set_cipher(SessionCipher(key, Role.AGENT))
    client.send(b"ls", now=T0)
    client.send(b'{"cols":80,"rows":24}', PayloadType.SIZE, now=T0)
    data, size = client.data_to_send()
    # A 2-byte keystroke becomes 30 bytes (data-channel.md §4.4).
    assert len(decode(data).payload) == 30
    assert decode(size).payload == b'{"cols":80,"rows":24}'
    agent.receive(data, now=T0)
    agent.receive(size, now=T0)
    got = drain(agent)
    assert [(e.payload_type, e.payload) for e in got] == [(1, b"ls"), (3, b'{"cols":80,"rows":24}')]
    with pytest.raises(ProtocolError):
        client.set_cipher(SessionCipher(key, Role.AGENT))


def test_a_tampered_encrypted_message_fails_the_channel():
    key = bytes(64)
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    agent.set_cipher(SessionCipher(key, Role.AGENT))
    client.set_cipher(SessionCipher(bytes([1]) * 64, Role.CLIENT))
    agent.send(b"secret", now=T0)
    client.receive(agent.data_to_send()[0], now=T0)
    (event,) = drain(client)
    assert isinstance(event, ChannelFailed) and "authentication" in event.reason


def test_resend_unacked_after_a_reconnect():
    client = DataChannel(Role.CLIENT)
    for part in (b"a", b"b"):
        client.send(part, now=T0)
    first = client.data_to_send()
    client.resend_unacked(now=T0 + 0.01)
    assert client.data_to_send() == first


def _deterministic_ids():
    counter = iter(range(1, 10**9))
    return lambda: uuid.UUID(int=next(counter))


@given(
    chunks_up=st.lists(st.binary(min_size=1, max_size=40), max_size=25),
    chunks_down=st.lists(st.binary(min_size=1, max_size=40), max_size=25),
    plan=st.lists(
        st.tuples(
            st.sampled_from(["deliver", "drop", "dup", "swap", "tick"]), st.integers(0, 10**6)
        ),
        max_size=300,
    ),
)
def test_exactly_once_in_order_under_loss_duplication_and_reordering(chunks_up, chunks_down, plan):
    client = DataChannel(Role.CLIENT, id_source=_deterministic_ids())
    agent = DataChannel(Role.AGENT, id_source=_deterministic_ids(), max_attempts=10**6)
    client._max_attempts = 10**6
    wires = {"up": [], "down": []}  # frames in flight, client->agent and agent->client
    got = {"client": [], "agent": []}
    now = T0
    for chunk in chunks_up:
        client.send(chunk, now=now)
    for chunk in chunks_down:
        agent.send(chunk, now=now)

    def pump():
        wires["up"] += client.data_to_send()
        wires["down"] += agent.data_to_send()

    def deliver(direction, index):
        frame = wires[direction].pop(index)
        (agent if direction == "up" else client).receive(frame, now=now)
        got["agent"].extend(drain(agent))
        got["client"].extend(drain(client))

    pump()
    for action, number in plan:
        direction = "up" if number % 2 else "down"
        wire = wires[direction]
        if action == "tick":
            now += (number % 700) / 1000
            client.tick(now)
            agent.tick(now)
        elif wire:
            index = number % len(wire)
            if action == "deliver":
                deliver(direction, index)
            elif action == "drop":
                wire.pop(index)
            elif action == "dup":
                wire.append(wire[index])
            elif action == "swap":
                wire[0], wire[index] = wire[index], wire[0]
        pump()

    # Then the network heals: everything in flight arrives, and retransmission fills gaps.
    for _ in range(2000):
        if not client.unacked_count and not agent.unacked_count and not any(wires.values()):
            break
        while wires["up"] or wires["down"]:
            for direction in ("up", "down"):
                if wires[direction]:
                    deliver(direction, 0)
            pump()
        now += 1.0
        client.tick(now)
        agent.tick(now)
        pump()
    assert client.unacked_count == 0 and agent.unacked_count == 0
    assert stream_bytes(got["agent"]) == b"".join(chunks_up)
    assert stream_bytes(got["client"]) == b"".join(chunks_down)
    for side in got.values():
        seqs = [e.sequence_number for e in side]
        assert seqs == list(range(len(seqs)))


def test_holding_incoming_data_keeps_it_unacked_until_released():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    agent.send(b"before", now=T0)
    client.receive(agent.data_to_send()[0], now=T0)
    client.hold_incoming(now=T0)
    assert client.holding
    frames = client.data_to_send()
    assert [decode(f).message_type for f in frames] == ["acknowledge", "pause_publication"]
    for frame in frames:
        agent.receive(frame, now=T0)
    agent.send(b"held by the sender", now=T0)
    assert agent.data_to_send() == []  # paused: a Hatchway sender holds new data back
    # What was in flight when the pause came is dropped without an ack.
    in_flight = AgentMessage(
        message_type=MessageType.OUTPUT_STREAM_DATA,
        created_date=1,
        sequence_number=1,
        payload=b"held by the sender",
    ).encode()
    client.receive(in_flight, now=T0)
    assert acks_in(client.data_to_send()) == []
    assert stream_bytes(drain(client)) == b"before"
    client.release_incoming(now=T0)
    (start,) = client.data_to_send()
    assert decode(start).message_type == "start_publication"
    agent.receive(start, now=T0)
    (frame,) = agent.data_to_send()
    client.receive(frame, now=T0)
    assert stream_bytes(drain(client)) == b"held by the sender"


def test_start_publication_resends_unacked_data_at_once():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    agent.send(b"lost", now=T0)
    agent.data_to_send()  # the receiver dropped it while congested
    client.release_incoming(now=T0)  # nothing held: no message
    assert client.data_to_send() == []
    client.hold_incoming(now=T0)
    client.release_incoming(now=T0)
    pause, start = client.data_to_send()
    agent.receive(pause, now=T0)
    agent.receive(start, now=T0 + 0.001)  # long before the retransmission timer
    (again,) = agent.data_to_send()
    assert decode(again).payload == b"lost"


def test_messages_that_time_out_together_are_resent_one_per_rto():
    client, agent = DataChannel(Role.CLIENT), DataChannel(Role.AGENT)
    for n in range(5):
        agent.send(b"m%d" % n, now=T0)
    agent.data_to_send()  # all delayed in some queue
    agent.tick(T0 + 0.5)
    (first,) = agent.data_to_send()
    assert decode(first).sequence_number == 0
    agent.tick(T0 + 0.5 + agent.rtt.rto / 2)
    assert agent.data_to_send() == []  # still within the RTO of that resend
    for frame in [first]:
        client.receive(frame, now=T0 + 0.6)
    for ack in client.data_to_send():
        agent.receive(ack, now=T0 + 0.6)
    agent.tick(T0 + 0.5 + agent.rtt.rto)
    (second,) = agent.data_to_send()
    assert decode(second).sequence_number == 1
    assert agent.retransmissions == 2
