"""Encode+decode throughput of the AgentMessage codec.

Prints messages per second and MB/s for 1 KiB and 64 KiB payloads, and the ratio
against a baseline measured in the same run: hashing the same payload with SHA-256,
which every encode and every decode must do once, so the ratio shows the codec's
overhead on top of the digest it cannot avoid.

    .venv/bin/python bench/protocol.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
import uuid

from hatchway.protocol import AgentMessage, decode


def measure(fn, seconds: float) -> int:
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            fn()
        count += 100
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"{'payload':>8} {'msgs/s':>10} {'MB/s':>8} {'sha256 x2 MB/s':>15} {'ratio':>6}")
    for size in (1024, 64 * 1024):
        payload = os.urandom(size)
        message = AgentMessage(
            message_type="output_stream_data",
            created_date=1_700_000_000_000,
            sequence_number=1,
            message_id=uuid.uuid4(),
            payload_type=1,
            payload=payload,
        )
        count = measure(lambda m=message: decode(m.encode()), args.seconds)
        rate = count / args.seconds
        baseline = (
            measure(
                lambda p=payload: (hashlib.sha256(p).digest(), hashlib.sha256(p).digest()),
                args.seconds,
            )
            / args.seconds
        )
        mb = rate * size / 1e6
        base_mb = baseline * size / 1e6
        print(f"{size:>8} {rate:>10.0f} {mb:>8.1f} {base_mb:>15.1f} {mb / base_mb:>6.2f}")


if __name__ == "__main__":
    main()
