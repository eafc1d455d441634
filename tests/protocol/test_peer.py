"""The link between cluster nodes, sans-I/O: the handshake proves the cluster key both
ways, and each stream's credit bounds what is in flight without ever getting stuck."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatchway.protocol import ProtocolError
from hatchway.protocol.peer import (
    Handshake,
    ReceiveGrants,
    SendWindow,
    StreamIds,
    data_frame,
    parse_call,
    split_data_frame,
)

KEY = b"k" * 32


def shake(dialer: Handshake, listener: Handshake, expected: str | None = "b"):
    nonce, challenge = listener.challenge()
    # Everything crosses as JSON, as on the wire.
    challenge = json.loads(json.dumps(challenge))
    name, hello = dialer.hello(challenge, expected)
    peer, welcome = listener.welcome(nonce, json.loads(json.dumps(hello)))
    dialer.check_welcome(name, challenge, hello, json.loads(json.dumps(welcome)))
    return name, peer


def test_two_nodes_with_the_key_learn_each_others_names():
    assert shake(Handshake(KEY, "a"), Handshake(KEY, "b")) == ("b", "a")


def test_a_dialer_without_the_key_is_refused():
    with pytest.raises(ProtocolError, match="does not hold this cluster's key"):
        shake(Handshake(b"x" * 32, "a"), Handshake(KEY, "b"))


def test_a_listener_without_the_key_is_found_out():
    listener = Handshake(b"x" * 32, "b")
    dialer = Handshake(KEY, "a")
    _, challenge = listener.challenge()
    name, hello = dialer.hello(challenge, "b")
    # The impostor cannot check the hello, so it answers with a made-up proof.
    with pytest.raises(ProtocolError, match="does not hold this cluster's key"):
        dialer.check_welcome(name, challenge, hello, {"op": "welcome", "proof": "00" * 32})


def test_a_replayed_hello_is_refused():
    dialer, listener = Handshake(KEY, "a"), Handshake(KEY, "b")
    nonce, challenge = listener.challenge()
    _, hello = dialer.hello(challenge, "b")
    listener.welcome(nonce, hello)
    fresh, _ = listener.challenge()  # the next connection's challenge
    with pytest.raises(ProtocolError):
        listener.welcome(fresh, hello)


def test_the_wrong_node_answering_is_refused():
    with pytest.raises(ProtocolError, match="dialled node c but b answered"):
        shake(Handshake(KEY, "a"), Handshake(KEY, "b"), expected="c")


@pytest.mark.parametrize(
    "hello",
    [None, [], {"op": "hello"}, {"op": "hello", "node": "a", "nonce": "n"}, {"op": "x" * 10}],
)
def test_malformed_hellos_are_protocol_errors(hello):
    listener = Handshake(KEY, "b")
    nonce, _ = listener.challenge()
    with pytest.raises(ProtocolError):
        listener.welcome(nonce, hello)


def test_data_frames_carry_their_stream():
    assert split_data_frame(data_frame(7, b"frame")) == (7, b"frame")
    with pytest.raises(ProtocolError):
        split_data_frame(b"\x00\x01")


@pytest.mark.parametrize("text", ["not json", "[]", '{"no": "op"}', '{"op": 3}'])
def test_calls_must_be_objects_with_an_op(text):
    with pytest.raises(ProtocolError):
        parse_call(text)


def test_the_two_ends_of_a_link_never_pick_the_same_stream_id():
    dialled, listened = StreamIds(True), StreamIds(False)
    ours = {dialled.next() for _ in range(100)}
    theirs = {listened.next() for _ in range(100)}
    assert not ours & theirs


@settings(max_examples=300)
@given(
    frames=st.lists(st.integers(1, 3 * 1024 * 1024), min_size=1, max_size=60),
    reads=st.lists(st.booleans(), min_size=1, max_size=200),
)
def test_credit_bounds_what_is_in_flight_and_never_sticks(frames, reads):
    """A sender and a receiver that reads when it pleases: what is in flight never passes
    the window (but for a lone frame larger than it), the receiver never finds the sender
    past it, and every frame gets through once the receiver reads."""
    size = 2 * 1024 * 1024
    window, grants = SendWindow(size), ReceiveGrants(size, size // 4)
    queue: list[int] = []
    pending = list(frames)
    moves = iter(reads)
    for _ in range(10_000):
        if not pending and not queue:
            break
        read = next(moves, True)
        if not read and pending and window.may_send(pending[0]):
            length = pending.pop(0)
            window.sent(length)
            grants.arrived(length)  # raises if the sender overran the window
            queue.append(length)
            assert window.in_flight <= size or len(queue) == 1
        elif queue:
            given_back = grants.written(queue.pop(0))
            if given_back:
                window.granted(given_back)
        elif pending:
            # Nothing to read, and the sender may not send: that would be stuck.
            assert window.may_send(pending[0])
            length = pending.pop(0)
            window.sent(length)
            grants.arrived(length)
            queue.append(length)
    assert not pending and not queue
    assert window.in_flight == 0


def test_credit_for_more_than_is_in_flight_is_refused():
    window = SendWindow(100)
    window.sent(10)
    with pytest.raises(ProtocolError):
        window.granted(11)


def test_a_sender_past_its_window_is_refused():
    grants = ReceiveGrants(100, 25)
    grants.arrived(60)
    with pytest.raises(ProtocolError, match="past its stream's window"):
        grants.arrived(60)
