"""Relay pairing: which socket each side of a session has, and what waits for it."""

from hatchway.server.pairing import PENDING_FRAMES, Pairing, may_join, role_of


class Socket:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_roles_and_who_may_join():
    assert role_of("mi-0123456789abcdef0") == "agent"
    assert role_of("") == "client" and role_of(None) == "client"
    assert may_join("Connecting", "client", "mi-1", None)
    assert may_join("Disconnected", "agent", "mi-1", "mi-1")
    assert not may_join("Connecting", "agent", "mi-1", None)  # agents sign as the target
    assert not may_join("Connecting", "agent", "mi-1", "mi-2")
    assert not may_join("Terminated", "client", "mi-1", None)
    assert not may_join(None, "client", "mi-1", None)


def test_frames_wait_for_a_side_and_reach_it_in_order():
    pairing: Pairing[Socket] = Pairing("s", "mi-1")
    client = Socket("client")
    assert not pairing.attach("client", client).both_connected
    pairing.peer("client").queue(b"one")
    pairing.peer("client").queue(b"two")
    agent = Socket("agent")
    attached = pairing.attach("agent", agent)
    assert attached.waiting == [b"one", b"two"] and attached.previous is None
    assert attached.both_connected
    assert pairing.agent.pending_bytes == 0 and not pairing.agent.pending


def test_a_newer_socket_replaces_the_older_one():
    pairing: Pairing[Socket] = Pairing("s", "mi-1")
    first, second = Socket("first"), Socket("second")
    pairing.attach("client", first)
    assert pairing.attach("client", second).previous is first
    # The older socket's end does not unplug the newer one.
    assert not pairing.detach("client", first)
    assert pairing.client.ws is second
    assert pairing.detach("client", second)
    assert pairing.client.ws is None


def test_the_queue_is_bounded():
    pairing: Pairing[Socket] = Pairing("s", "mi-1")
    side = pairing.side("agent")
    for _ in range(PENDING_FRAMES + 3):
        side.queue(b"x")
    assert len(side.pending) == PENDING_FRAMES and side.dropped == 3
    side.queue(b"y" * (5 * 1024 * 1024))
    assert side.dropped == 4


def test_a_resend_is_not_new_data_and_a_new_socket_counts_afresh():
    pairing: Pairing[Socket] = Pairing("s", "mi-1")
    pairing.attach("agent", Socket("agent"))
    agent = pairing.side("agent")
    assert agent.sends_new_data(0) and agent.sends_new_data(1) and agent.sends_new_data(5)
    assert not agent.sends_new_data(5)  # the same message again
    assert not agent.sends_new_data(3)  # an older one, resent after a lost acknowledgement
    assert agent.sends_new_data(6)
    # A reconnection may come from a new client that numbers from 0 again.
    pairing.attach("agent", Socket("again"))
    assert agent.sends_new_data(0)


def test_a_side_records_the_acknowledged_numbers_in_runs():
    from hatchway.server.pairing import ACKNOWLEDGED_RUNS

    pairing: Pairing[Socket] = Pairing("s", "mi-1")
    agent = pairing.side("agent")
    for number in [0, 1, 2, 5, 4, 7, 3]:
        agent.peer_acknowledged(number)
    assert (agent.run_starts, agent.run_ends) == ([0, 7], [5, 7])
    assert all(agent.was_acknowledged(n) for n in [0, 3, 5, 7])
    assert not any(agent.was_acknowledged(n) for n in [-1, 6, 8])
    agent.peer_acknowledged(6)
    assert (agent.run_starts, agent.run_ends) == ([0], [7])
    # Past ACKNOWLEDGED_RUNS separate runs, the oldest go.
    for number in range(10, 10 + 2 * (ACKNOWLEDGED_RUNS + 1), 2):
        agent.peer_acknowledged(number)
    assert len(agent.run_starts) == ACKNOWLEDGED_RUNS
    assert not agent.was_acknowledged(0) and agent.was_acknowledged(10 + 2 * ACKNOWLEDGED_RUNS)
