"""Session latency: StartSession to the first prompt byte, and keystroke echo.

Starts `hatchway up` (server plus local agent) in a temporary home, then measures:
- the time from calling StartSession to the first byte of shell output, over N sessions
  (median and p95);
- the keystroke echo round trip (one byte typed, its echo seen) with M sessions open.

The baseline, measured in the same run, is a local login shell under a pty on this
machine: the same shell started and echoing with no network, no server and no agent in
between. The ratio shows what Hatchway adds.

    .venv/bin/python bench/session.py [--sessions 50] [--open 100] [--keystrokes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pty
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import boto3
from botocore.config import Config

from hatchway.client.connection import DataChannelDialer
from hatchway.protocol.client_session import ClientSession, OutputReceived, SessionStarted

log = logging.getLogger("bench")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    median, p95 = statistics.median(values) * 1000, percentile(values, 95) * 1000
    return f"median {median:7.1f} ms   p95 {p95:7.1f} ms"


class Stack:
    """`hatchway up` on a free loopback port, in its own process."""

    def __init__(self, home: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hatchway",
                "up",
                "--home",
                str(home),
                "--listen",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Shells as this user, like the baseline's, and no hatchway-user left behind.
            env={**os.environ, "HATCHWAY_SESSION_USER": ""},
            text=True,
        )
        self.url = self.target = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.target:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("hatchway up exited early")
            if match := re.search(r"listening on (\S+)", line):
                self.url = match.group(1)
            if match := re.search(r"registered as (mi-[0-9a-f]{17})", line):
                self.target = match.group(1)
        os.environ.update(
            AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
            AWS_CONFIG_FILE="/dev/null",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        self.ssm = boto3.client(
            "ssm", endpoint_url=self.url, config=Config(retries={"total_max_attempts": 1})
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Shell:
    """One Hatchway session driven from code: output in, keystrokes out."""

    def __init__(self, session: ClientSession, socket: object) -> None:
        self.session = session
        self.socket = socket
        self.output = bytearray()
        self.changed = asyncio.Event()
        self.started = asyncio.Event()
        self.first_output = asyncio.Event()

    @classmethod
    async def open(cls, stack: Stack, http: aiohttp.ClientSession) -> tuple[Shell, float]:
        began = time.perf_counter()
        response = await asyncio.to_thread(stack.ssm.start_session, Target=stack.target)
        dialer = DataChannelDialer(
            http, response["StreamUrl"], client_id=str(uuid.uuid4()), ca_bundle=None, log=log
        )
        socket = await dialer.open(response["TokenValue"])
        shell = cls(ClientSession(response["SessionId"], stack.target), socket)
        shell.task = asyncio.create_task(shell.pump())
        await asyncio.wait_for(shell.first_output.wait(), 30)
        return shell, time.perf_counter() - began

    async def pump(self) -> None:
        while (frame := await self.socket.receive()) is not None:
            self.session.receive(frame, time.time())
            while (event := self.session.next_event()) is not None:
                if isinstance(event, OutputReceived):
                    self.output += event.data
                    self.first_output.set()
                    self.changed.set()
                elif isinstance(event, SessionStarted):
                    self.started.set()
            await self.socket.send(self.session.data_to_send())

    async def type(self, data: bytes) -> None:
        self.session.send_input(data, time.time())
        await self.socket.send(self.session.data_to_send())

    async def echo_time(self) -> float:
        await self.started.wait()
        seen = len(self.output)
        began = time.perf_counter()
        await self.type(b"x")
        while len(self.output) == seen or b"x" not in self.output[seen:]:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)
        return time.perf_counter() - began

    async def close(self) -> None:
        await self.type(b"\x15exit\r")
        await asyncio.wait_for(self.task, 10)


async def hatchway_figures(stack: Stack, sessions: int, open_count: int, keystrokes: int):
    starts: list[float] = []
    # limit=0: each open session holds a connection; the default pool stops at 100.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for _ in range(sessions):
            shell, elapsed = await Shell.open(stack, http)
            starts.append(elapsed)
            await shell.close()
        shells = [(await Shell.open(stack, http))[0] for _ in range(open_count)]
        await asyncio.sleep(0.05 * len(shells))  # let every shell settle at its prompt
        echoes = [await shells[i % len(shells)].echo_time() for i in range(keystrokes)]
        await asyncio.gather(*(shell.close() for shell in shells), return_exceptions=True)
    return starts, echoes


def local_figures(sessions: int, keystrokes: int) -> tuple[list[float], list[float]]:
    """The same login shell under a local pty: the floor for both figures."""
    starts, echoes = [], []
    shell = os.environ.get("SHELL", "/bin/bash")
    for i in range(sessions):
        began = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(shell, ["-" + Path(shell).name])
        os.read(fd, 1)
        starts.append(time.perf_counter() - began)
        if i == sessions - 1:
            time.sleep(0.5)
            os.read(fd, 65536)
            for _ in range(keystrokes):
                began = time.perf_counter()
                os.write(fd, b"x")
                while b"x" not in os.read(fd, 1024):
                    pass
                echoes.append(time.perf_counter() - began)
        os.write(fd, b"\x15exit\r")
        os.waitpid(pid, 0)
        os.close(fd)
    return starts, echoes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--open", type=int, default=100, dest="open_count")
    parser.add_argument("--keystrokes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        stack = Stack(Path(home))
        try:
            starts, echoes = asyncio.run(
                hatchway_figures(stack, args.sessions, args.open_count, args.keystrokes)
            )
        finally:
            stack.stop()
    base_starts, base_echoes = local_figures(args.sessions, args.keystrokes)
    print(f"StartSession to first output byte, {args.sessions} sessions")
    print(f"  hatchway     {summary(starts)}")
    print(f"  local pty    {summary(base_starts)}")
    print(f"  ratio (median) {statistics.median(starts) / statistics.median(base_starts):.1f}x")
    print(f"Keystroke echo with {args.open_count} sessions open, {args.keystrokes} keystrokes")
    print(f"  hatchway     {summary(echoes)}")
    print(f"  local pty    {summary(base_echoes)}")
    print(f"  ratio (median) {statistics.median(echoes) / statistics.median(base_echoes):.1f}x")


if __name__ == "__main__":
    main()
