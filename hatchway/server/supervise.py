"""Long-lived server tasks that survive their own failures.

A loop such as "keep the nodes' pings fresh" runs one ``step`` after another. When a step
raises (the database went away, a bug), the error is logged once for the whole streak of
failures, the loop waits a little longer each time, and carries on; the first step that
works again is logged too. Only cancellation stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("hatchway.server.supervise")

RETRY_FIRST = 0.5
RETRY_MAX = 10.0


class FailureStreak:
    """What to log about a run of failures: the first one in full, then nothing until a
    success ends the streak. Pure: the caller does the logging and the waiting."""

    def __init__(self, first: float = RETRY_FIRST, most: float = RETRY_MAX) -> None:
        self.first, self.most = first, most
        self.failures = 0

    def failed(self) -> tuple[bool, float]:
        """A step failed: whether to log it, and how long to wait before the next."""
        self.failures += 1
        return self.failures == 1, min(self.most, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> int:
        """A step worked: how many failures it ends (0 when there was no streak)."""
        ended, self.failures = self.failures, 0
        return ended


async def supervised_loop(
    name: str,
    step: Callable[[], Awaitable[float | None]],
    *,
    retry_first: float = RETRY_FIRST,
    retry_max: float = RETRY_MAX,
) -> None:
    """Run ``step`` for ever. It returns how many seconds to wait before the next step
    (None: the next step at once). A failure is logged (once per streak) and retried."""
    streak = FailureStreak(retry_first, retry_max)
    while True:
        try:
            pause = await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            report, pause = streak.failed()
            if report:
                log.exception("%s failed; retrying until it works", name, extra={"task": name})
        else:
            ended = streak.succeeded()
            if ended:
                log.warning(
                    "%s works again after %d failed attempts",
                    name,
                    ended,
                    extra={"task": name, "failures": ended},
                )
        if pause:
            await asyncio.sleep(pause)
        else:
            await asyncio.sleep(0)  # let the rest of the server run between steps


class Supervisor:
    """The long-lived tasks of one server part: started by name, cancelled together."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    def start(self, name: str, step: Callable[[], Awaitable[float | None]]) -> None:
        """Run ``step`` in a supervised loop, unless a loop of that name already runs."""
        if not self.running(name):
            self.tasks[name] = asyncio.create_task(supervised_loop(name, step), name=name)

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
