"""Throttling of console sign-in: pure decision logic, with the time passed in.

Each sign-in attempt spends a token from two buckets: the source address's and the named
user's (or access key's). An empty bucket refills one token at a time; while either bucket
the attempt would spend from is empty, the attempt is refused before any password is
checked, with the seconds until a token is back. A success gives back the address's token
for that attempt and refills the user's bucket, so its owner is not held back by their own
typos once they get in; the address's earlier failures stay counted, so one address cannot
reset its budget by signing in to an account it holds while guessing at others.

The address bucket stops one source from guessing across many users; the user bucket
stops many sources (a botnet) guessing one user's password. The price of the second is
that anyone can hold a user's console sign-in back for a while by failing on purpose,
which is the trade every lockout makes; access keys (SigV4) are not affected.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketPolicy:
    capacity: int  # failures allowed in a burst
    refill_seconds: float  # one failure forgiven every this many seconds


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _Buckets:
    """Token buckets by key, at most ``max_keys`` of them: full buckets are the same as
    absent ones, so the least recently touched are dropped first."""

    def __init__(self, policy: BucketPolicy, max_keys: int) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(
            float(self.policy.capacity), bucket.tokens + elapsed / self.policy.refill_seconds
        )
        bucket.updated = now
        if bucket.tokens >= self.policy.capacity:
            del self._buckets[key]
            return None
        return bucket

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token again; 0 if it has one now."""
        bucket = self._refilled(key, now)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) * self.policy.refill_seconds

    def spend(self, key: str, now: float) -> None:
        bucket = self._refilled(key, now)
        if bucket is None:
            bucket = _Bucket(float(self.policy.capacity), now)
            self._buckets[key] = bucket
        bucket.tokens = max(0.0, bucket.tokens - 1)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def refund(self, key: str, now: float) -> None:
        bucket = self._refilled(key, now)
        if bucket is not None:
            bucket.tokens += 1
            if bucket.tokens >= self.policy.capacity:
                del self._buckets[key]

    def reset(self, key: str) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)


# 10 failures in a burst from one address, then one every 6 s (10 a minute); 5 for one
# user, then one every 30 s (2 a minute). A person who mistypes never meets either.
ADDRESS_POLICY = BucketPolicy(capacity=10, refill_seconds=6.0)
USER_POLICY = BucketPolicy(capacity=5, refill_seconds=30.0)
MAX_KEYS = 10_000


class SignInThrottle:
    """Spends a token for each attempt as it starts, not when it has failed: checks run
    concurrently, and counting afterwards would let a burst of parallel guesses through
    before the first one had failed. A success gives the tokens back."""

    def __init__(
        self,
        address_policy: BucketPolicy = ADDRESS_POLICY,
        user_policy: BucketPolicy = USER_POLICY,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._addresses = _Buckets(address_policy, max_keys)
        self._users = _Buckets(user_policy, max_keys)

    def attempt(self, now: float, address: str, user: str) -> float:
        """0 if an attempt from ``address`` for ``user`` may go ahead now (and it is
        counted); otherwise the seconds to wait, and nothing is counted."""
        wait = max(self._addresses.wait(address, now), self._users.wait(user, now))
        if wait == 0:
            self._addresses.spend(address, now)
            self._users.spend(user, now)
        return wait

    def succeeded(self, now: float, address: str, user: str) -> None:
        self._addresses.refund(address, now)
        self._users.reset(user)

    def tracked(self) -> tuple[int, int]:
        """How many addresses and users have failures on record (for tests and logs)."""
        return len(self._addresses), len(self._users)
