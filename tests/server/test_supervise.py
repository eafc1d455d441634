"""Supervised loops: a failing step is logged once per streak and retried; only
cancellation ends the loop."""

import asyncio
import logging

from hatchway.server.supervise import FailureStreak, Supervisor, supervised_loop


def test_a_streak_is_reported_once_and_backs_off():
    streak = FailureStreak(0.5, 4.0)
    assert [streak.failed() for _ in range(5)] == [
        (True, 0.5),
        (False, 1.0),
        (False, 2.0),
        (False, 4.0),
        (False, 4.0),
    ]
    assert streak.succeeded() == 5
    assert streak.succeeded() == 0
    assert streak.failed() == (True, 0.5)


def test_a_loop_carries_on_after_failures(caplog):
    outcomes = [RuntimeError("database away")] * 3 + [None, ValueError("again"), None]
    done = asyncio.Event()
    steps = []

    async def step():
        steps.append(len(steps))
        if len(steps) > len(outcomes):
            done.set()
            await asyncio.Event().wait()  # park until cancelled
        outcome = outcomes[len(steps) - 1]
        if outcome is not None:
            raise outcome
        return None

    async def main():
        task = asyncio.create_task(supervised_loop("test loop", step, retry_first=0.001))
        await asyncio.wait_for(done.wait(), 30)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return task.cancelled()

    with caplog.at_level(logging.INFO, logger="hatchway.server.supervise"):
        assert asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "test loop failed; retrying until it works",
        "test loop works again after 3 failed attempts",
        "test loop failed; retrying until it works",
        "test loop works again after 1 failed attempts",
    ]
    assert caplog.records[0].exc_info is not None  # the traceback of the first failure


def test_a_supervisor_runs_one_loop_per_name_and_stops_them():
    async def main():
        supervisor = Supervisor()
        started = asyncio.Event()

        async def step():
            started.set()
            return 0.01

        supervisor.start("loop", step)
        first = supervisor.tasks["loop"]
        supervisor.start("loop", step)
        assert supervisor.tasks["loop"] is first
        await asyncio.wait_for(started.wait(), 30)
        await supervisor.stop()
        return first.cancelled(), supervisor.running("loop")

    assert asyncio.run(main()) == (True, False)
