"""The sign-in throttle, as pure logic: time is passed in."""

import pytest

from hatchway.server.throttle import BucketPolicy, SignInThrottle

ADDRESS = BucketPolicy(capacity=3, refill_seconds=10.0)
USER = BucketPolicy(capacity=2, refill_seconds=60.0)


def throttle(**changes):
    return SignInThrottle(address_policy=ADDRESS, user_policy=USER, **changes)


def test_a_user_is_held_back_after_a_burst_of_attempts():
    t = throttle()
    assert t.attempt(0.0, "10.0.0.1", "alice") == 0
    assert t.attempt(0.0, "10.0.0.1", "alice") == 0
    assert t.attempt(0.0, "10.0.0.1", "alice") == pytest.approx(60.0)
    # from another address too: many sources cannot share out the guesses
    assert t.attempt(0.0, "10.0.0.2", "alice") == pytest.approx(60.0)
    assert t.attempt(30.0, "10.0.0.2", "alice") == pytest.approx(30.0)
    assert t.attempt(60.0, "10.0.0.2", "alice") == 0
    # another user from the first address may still try
    assert t.attempt(60.0, "10.0.0.1", "bob") == 0


def test_refused_attempts_are_not_counted():
    t = throttle()
    t.attempt(0.0, "10.0.0.1", "alice")
    t.attempt(0.0, "10.0.0.1", "alice")
    for _ in range(100):
        assert t.attempt(0.0, "10.0.0.1", "alice") > 0
    assert t.attempt(0.0, "10.0.0.1", "bob") == 0  # the address spent 3, not 103


def test_an_address_is_held_back_across_users():
    t = throttle()
    for user in ("a", "b", "c"):
        assert t.attempt(0.0, "10.0.0.1", user) == 0
    assert t.attempt(0.0, "10.0.0.1", "d") == pytest.approx(10.0)
    assert t.attempt(0.0, "10.0.0.9", "d") == 0
    assert t.attempt(10.0, "10.0.0.1", "e") == 0


def test_tokens_refill_one_at_a_time():
    t = throttle()
    for n in range(3):
        t.attempt(0.0, "10.0.0.1", f"u{n}")
    assert t.attempt(10.0, "10.0.0.1", "x") == 0  # the one token back is spent at once
    assert t.attempt(10.0, "10.0.0.1", "y") == pytest.approx(10.0)


def test_concurrent_attempts_are_bounded_before_any_has_failed():
    t = throttle()
    started = [t.attempt(0.0, "10.0.0.1", f"user{n}") for n in range(20)]
    assert started.count(0) == 3


def test_success_clears_the_user_and_gives_back_its_own_token():
    t = throttle()
    t.attempt(0.0, "10.0.0.1", "alice")
    t.attempt(0.0, "10.0.0.1", "alice")  # the right password, this time
    t.succeeded(0.0, "10.0.0.1", "alice")
    assert t.attempt(0.0, "10.0.0.2", "alice") == 0
    t.attempt(0.0, "10.0.0.1", "mallory")
    # alice's failure and mallory's attempt still count for the address: one token left
    assert t.attempt(0.0, "10.0.0.1", "bob") == 0
    assert t.attempt(0.0, "10.0.0.1", "carl") == pytest.approx(10.0)


def test_memory_is_bounded_and_refilled_buckets_are_forgotten():
    t = throttle(max_keys=100)
    for i in range(1000):
        t.attempt(0.0, f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert t.tracked() == (100, 100)
    t = throttle()
    t.attempt(0.0, "10.0.0.1", "alice")
    assert t.tracked() == (1, 1)
    t.succeeded(1000.0, "10.0.0.1", "alice")
    assert t.tracked() == (0, 0)


def test_a_clock_that_goes_back_refills_nothing():
    t = throttle()
    t.attempt(100.0, "10.0.0.1", "alice")
    t.attempt(100.0, "10.0.0.1", "alice")
    assert t.attempt(50.0, "10.0.0.1", "alice") == pytest.approx(60.0)
