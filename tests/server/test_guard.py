"""The connection guard's rules, as pure logic: header end, pending connections by
address, and what to log when accept() runs out of file descriptors."""

import pytest

from hatchway.server.guard import AcceptAlarm, HeaderEnd, PendingConnections


@pytest.mark.parametrize(
    "pieces",
    [
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
        [b"GET / HTTP/1.1\r\nHost: x\r", b"\n", b"\r", b"\n"],
        [b"GET / HTTP/1.1\r\nHost: x\r\n", b"\r\n", b"body"],
        [bytes([b]) for b in b"GET / HTTP/1.1\r\n\r\n"],
    ],
)
def test_the_end_of_the_headers_is_found_across_pieces(pieces):
    end = HeaderEnd()
    results = [end.feed(piece) for piece in pieces]
    assert results[-1] is True
    assert results.count(True) == len(results) - results.index(True)


def test_headers_that_never_end():
    end = HeaderEnd()
    for _ in range(1000):
        assert not end.feed(b"X-Slow: 1\r\n")


def test_pending_connections_are_capped_by_address_and_released():
    pending = PendingConnections(per_address=2)
    assert pending.admit("10.0.0.1") and pending.admit("10.0.0.1")
    assert not pending.admit("10.0.0.1")
    assert pending.admit("10.0.0.2")
    pending.release("10.0.0.1")
    assert pending.admit("10.0.0.1")
    for _ in range(2):
        pending.release("10.0.0.1")
    pending.release("10.0.0.2")
    assert len(pending) == 0  # nothing kept for addresses that hold nothing


def test_running_out_of_descriptors_is_said_once_then_once_a_minute():
    alarm = AcceptAlarm(every=60.0, settle=5.0)
    said = [alarm.failed(float(t)) for t in range(0, 130)]  # one failure a second
    lines = [line for line in said if line]
    assert len(lines) == 3
    assert lines[0].startswith("out of file descriptors")
    assert lines[1] == "still out of file descriptors: 61 accept() failures in 60 s"
    assert alarm.accepted(131.0) is None  # too soon to say it is over
    assert alarm.accepted(134.0) == (
        "accepting connections again after 129 s out of file descriptors (130 accept() failures)"
    )
    assert alarm.accepted(135.0) is None
    assert alarm.failed(200.0).startswith("out of file descriptors")


def test_accept_failing_and_working_by_turns_is_one_shortage():
    alarm = AcceptAlarm(settle=5.0)
    said = []
    for t in range(20):
        said.append(alarm.failed(t * 0.5))
        said.append(alarm.accepted(t * 0.5 + 0.1))
    assert [line for line in said if line] == [said[0]]
