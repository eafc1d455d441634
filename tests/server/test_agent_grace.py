"""The grace period of sessions whose agent went away, with time passed in."""

from datetime import UTC, datetime, timedelta

from hatchway.server.agent_grace import (
    AgentGrace,
    gone_reason,
    sessions_it_lost,
    unattended,
)


def test_an_agent_away_past_its_grace_is_expired():
    grace = AgentGrace()
    assert grace.away("mi-1", now=100.0, seconds=60) == 160.0
    assert grace.next_deadline() == 160.0
    assert grace.expired(159.9) == []
    assert grace.expired(160.0) == [("mi-1", 60)]


def test_an_expired_agent_stays_until_its_sessions_are_ended():
    grace = AgentGrace()
    grace.away("mi-1", now=0.0, seconds=5)
    assert grace.expired(10.0) == [("mi-1", 5)]
    assert grace.expired(11.0) == [("mi-1", 5)]  # ending them failed: try again
    assert grace.forget("mi-1")
    assert grace.expired(12.0) == []
    assert grace.next_deadline() is None


def test_an_agent_that_comes_back_in_time_is_not_expired():
    grace = AgentGrace()
    grace.away("mi-1", now=0.0, seconds=60)
    assert grace.is_away("mi-1")
    assert grace.forget("mi-1")
    assert not grace.is_away("mi-1")
    assert not grace.forget("mi-1")  # it was not away any more
    assert grace.expired(1000.0) == []


def test_a_second_drop_keeps_the_first_deadline():
    grace = AgentGrace()
    grace.away("mi-1", now=0.0, seconds=60)
    assert grace.away("mi-1", now=30.0, seconds=60) == 60.0


def test_each_agent_has_its_own_deadline():
    grace = AgentGrace()
    grace.away("mi-1", now=0.0, seconds=60)
    grace.away("mi-2", now=10.0, seconds=5)
    assert grace.next_deadline() == 15.0
    assert grace.expired(20.0) == [("mi-2", 5)]


def test_the_reason_names_the_node_and_the_wait():
    assert gone_reason("mi-1", 2.5) == (
        "The agent on mi-1 went away and did not come back within 2.5 s."
    )


def test_an_agent_that_comes_back_keeps_only_the_sessions_it_lists():
    opened = datetime(2026, 1, 1, 12, tzinfo=UTC)
    before, after = opened - timedelta(minutes=5), opened + timedelta(seconds=1)
    active = {"s-live": before, "s-lost": before, "s-new": after}
    # s-new started after the channel opened: the agent's list could not hold it yet.
    assert sessions_it_lost(active, ["s-live", "s-unknown"], opened) == ["s-lost"]
    assert sessions_it_lost(active, [], opened) == ["s-live", "s-lost"]


def test_nodes_no_server_node_holds_are_unattended():
    nodes = {"mi-2": None, "mi-1": None, "mi-3": "server-b"}
    assert unattended(nodes) == ["mi-1", "mi-2"]
    assert unattended({}) == []


def test_what_remains_of_the_wait():
    grace = AgentGrace()
    assert grace.remaining("mi-1", now=0.0) is None
    grace.away("mi-1", now=10.0, seconds=60)
    assert grace.remaining("mi-1", now=40.0) == 30.0
    assert grace.remaining("mi-1", now=100.0) == 0.0
