"""Console sign-in under attack: keystroke echo of an open session while wrong sign-ins
arrive, against the same session with none.

Each run starts `hatchway up` in a fresh home (so the sign-in throttle starts empty),
opens one shell session, and measures keystroke echo twice: quiet, then while 200 wrong
console sign-ins (20 at a time, each for a different user name) arrive from another
process on this machine.
Prints the median over the runs of each p99, the sign-in answers, and the load average
(the bench shares the machine with whatever else runs on it).

    .venv/bin/python bench/signin.py [--runs 3] [--signins 200] [--keystrokes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from botocore.config import Config
from session import Shell, Stack, percentile


async def echoes_until(shell: Shell, count: int, until: asyncio.Future[Any] | None) -> list[float]:
    """``count`` echo times, and more while ``until`` is still running."""
    times: list[float] = []
    while len(times) < count or (until is not None and not until.done()):
        times.append(await shell.echo_time())
    return times


async def wrong_sign_ins(url: str, total: int, at_once: int) -> collections.Counter[int]:
    statuses: collections.Counter[int] = collections.Counter()
    slots = asyncio.Semaphore(at_once)
    async with aiohttp.ClientSession() as http:

        async def one(n: int) -> None:
            async with (
                slots,
                http.post(
                    f"{url}/console/api/sign-in",
                    json={"userName": f"guess-{n}", "password": f"wrong-{n}"},
                ) as response,
            ):
                await response.read()
                statuses[response.status] += 1

        await asyncio.gather(*(one(n) for n in range(total)))
    return statuses


def flood(url: str, total: int, at_once: int) -> collections.Counter[int]:
    return asyncio.run(wrong_sign_ins(url, total, at_once))


async def one_run(stack: Stack, signins: int, keystrokes: int):
    # The sign-ins come from another process, so they do not share the bench's loop; it is
    # started before the quiet figure, so its start-up is not in the loaded one.
    with ProcessPoolExecutor(1) as pool:
        pool.submit(int).result()
        async with aiohttp.ClientSession() as http:
            shell, _ = await Shell.open(stack, http)
            await shell.started.wait()
            quiet = await echoes_until(shell, keystrokes, None)
            attack = asyncio.ensure_future(
                asyncio.get_running_loop().run_in_executor(pool, flood, stack.url, signins, 20)
            )
            loaded = await echoes_until(shell, keystrokes, attack)
            statuses = await attack
            await shell.close()
    return quiet, loaded, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--signins", type=int, default=200)
    parser.add_argument("--keystrokes", type=int, default=200)
    args = parser.parse_args()
    quiet_p99, loaded_p99 = [], []
    answers: collections.Counter[int] = collections.Counter()
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            stack = Stack(Path(home))
            # boto3's default session keeps the first run's credentials; each run has its own.
            stack.ssm = boto3.session.Session().client(
                "ssm", endpoint_url=stack.url, config=Config(retries={"total_max_attempts": 1})
            )
            try:
                quiet, loaded, statuses = asyncio.run(one_run(stack, args.signins, args.keystrokes))
            finally:
                stack.stop()
        quiet_p99.append(percentile(quiet, 99) * 1000)
        loaded_p99.append(percentile(loaded, 99) * 1000)
        answers += statuses
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Keystroke echo p99, median of {args.runs} runs ({args.keystrokes}+ keystrokes each)")
    print(f"  no sign-ins                    {statistics.median(quiet_p99):7.1f} ms")
    print(f"  {args.signins} wrong sign-ins arriving   {statistics.median(loaded_p99):7.1f} ms")
    print(
        "  per run: quiet "
        + ", ".join(f"{x:.1f}" for x in quiet_p99)
        + " ms; under sign-ins "
        + ", ".join(f"{x:.1f}" for x in loaded_p99)
        + " ms"
    )
    shown = ", ".join(f"{count} x {status}" for status, count in sorted(answers.items()))
    print(f"Sign-in answers over all runs: {shown}")
    print(f"Load average: {load}")


if __name__ == "__main__":
    main()
