"""SessionLimits: idle timeout, maximum duration and join deadline, with time passed in."""

from hatchway.server.limits import IDLE_MESSAGE, JOIN_MESSAGE, MAX_DURATION_MESSAGE, SessionLimits


def test_idle_counts_from_the_last_activity():
    limits = SessionLimits()
    limits.watch("s", 100.0, idle=60.0, max_duration=None)
    assert limits.expired(159.9) == []
    limits.activity("s", 150.0)
    assert limits.expired(209.9) == []
    assert limits.expired(210.0) == [("s", IDLE_MESSAGE)]
    # Still watched until the caller has ended it: a failed end is retried.
    assert limits.expired(211.0) == [("s", IDLE_MESSAGE)]
    limits.forget("s")
    assert limits.expired(300.0) == [] and "s" not in limits


def test_activity_never_moves_back():
    limits = SessionLimits()
    limits.watch("s", 100.0, idle=10.0, max_duration=None)
    limits.activity("s", 105.0)
    limits.activity("s", 101.0)  # a late report of something older
    assert limits.expired(114.9) == []
    assert limits.expired(115.0) == [("s", IDLE_MESSAGE)]


def test_max_duration_counts_from_the_start_whatever_the_activity():
    limits = SessionLimits()
    limits.watch("s", 100.0, idle=20.0, max_duration=30.0, started=90.0)
    for moment in (100.0, 110.0, 119.0):
        limits.activity("s", moment)
        assert limits.expired(moment) == []
    assert limits.expired(120.0) == [("s", MAX_DURATION_MESSAGE)]


def test_the_maximum_duration_wins_over_idle():
    limits = SessionLimits()
    limits.watch("s", 0.0, idle=10.0, max_duration=10.0)
    assert limits.expired(10.0) == [("s", MAX_DURATION_MESSAGE)]


def test_a_restart_keeps_the_saved_last_activity():
    limits = SessionLimits()
    # Started at 0, last active at 50, the server came back at 100: idle ends at 110.
    limits.watch("s", 100.0, idle=60.0, max_duration=None, started=0.0, last_activity=50.0)
    assert limits.expired(109.9) == []
    assert limits.expired(110.0) == [("s", IDLE_MESSAGE)]


def test_without_a_saved_activity_idle_counts_from_the_watch():
    limits = SessionLimits()
    limits.watch("s", 100.0, idle=60.0, max_duration=None, started=0.0)
    assert limits.expired(159.9) == []
    assert limits.expired(160.0) == [("s", IDLE_MESSAGE)]


def test_a_client_that_never_joins_ends_at_its_deadline():
    limits = SessionLimits()
    limits.watch("s", 0.0, idle=1200.0, max_duration=None, join_deadline=120.0)
    assert limits.expired(119.9) == []
    assert limits.expired(120.0) == [("s", JOIN_MESSAGE)]


def test_a_client_that_joined_has_no_deadline():
    limits = SessionLimits()
    limits.watch("s", 0.0, idle=None, max_duration=None, join_deadline=120.0)
    limits.joined("s")
    assert limits.expired(10_000.0) == []
    assert limits.seconds_to_next(10_000.0) is None


def test_a_new_token_extends_the_join_deadline_never_shortens_it():
    limits = SessionLimits()
    limits.watch("s", 0.0, idle=None, max_duration=None, join_deadline=120.0)
    limits.extend_join("s", 200.0)
    limits.extend_join("s", 150.0)
    assert limits.expired(199.0) == []
    assert limits.expired(200.0) == [("s", JOIN_MESSAGE)]


def test_watching_again_keeps_what_was_seen():
    limits = SessionLimits()
    limits.watch("s", 0.0, idle=10.0, max_duration=None, join_deadline=5.0)
    limits.joined("s")
    limits.activity("s", 8.0)
    limits.watch("s", 9.0, idle=10.0, max_duration=None, join_deadline=5.0, last_activity=3.0)
    assert limits.expired(17.9) == []
    assert limits.expired(18.0) == [("s", IDLE_MESSAGE)]


def test_the_next_deadline_is_the_earliest():
    limits = SessionLimits()
    assert limits.seconds_to_next(0.0) is None
    limits.watch("a", 0.0, idle=50.0, max_duration=None)
    limits.watch("b", 0.0, idle=None, max_duration=30.0, join_deadline=20.0)
    assert limits.seconds_to_next(5.0) == 15.0
    limits.joined("b")
    assert limits.seconds_to_next(5.0) == 25.0
    assert limits.seconds_to_next(100.0) == 0.0


def test_unsaved_activity_is_reported_until_saved():
    limits = SessionLimits()
    limits.watch("old", 100.0, idle=60.0, max_duration=None, last_activity=90.0)
    limits.watch("new", 100.0, idle=60.0, max_duration=None)
    assert limits.unsaved_activity() == {"new": 100.0}
    limits.saved({"new": 100.0})
    assert limits.unsaved_activity() == {}
    limits.activity("old", 120.0)
    limits.activity("new", 130.0)
    assert limits.unsaved_activity() == {"old": 120.0, "new": 130.0}
    limits.saved({"old": 120.0})
    limits.activity("old", 121.0)
    assert limits.unsaved_activity() == {"old": 121.0, "new": 130.0}
