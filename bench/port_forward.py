"""Port forwarding: throughput and memory through a Hatchway tunnel, against ssh -L.

Moves the same bytes (1 GiB by default) to a sink on 127.0.0.1 three ways:
- direct: straight to the sink over loopback TCP, the ceiling;
- ssh -L: through OpenSSH's forwarding, to a real sshd on loopback (tests/sshd.py);
- hatchway: through `hatchway start-session --document-name AWS-StartPortForwardingSession`,
  with `hatchway up` (server plus local agent) in a temporary home, as bench/session.py.
Each way carries one stream, then 10 parallel streams sharing the bytes, and the sink checks
every stream's sha256. Then a reader stalls: the sink accepts a connection and reads nothing
while the sender writes for a few seconds; what the sender got in is what the path buffered,
printed with the RSS of the tunnel's processes. A bounded tunnel shows both levelling off.

    .venv/bin/python bench/port_forward.py [--bytes 1G] [--quick] [--stall-seconds 5]

The sink keeps what arrives in memory and hashes it after the clock stops: sha256 runs at
about 1 GB/s on one core, which would otherwise cap the direct path at a quarter of its
speed. The sender and the sink run in this process and share the CPUs with the tunnel, the
same for every path. Exit status 1 if any path failed or delivered other bytes.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import hashlib
import os
import queue
import re
import secrets
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests/sshd.py, the sshd the tests use
from tests.sshd import free_port, running_sshd, stop_process  # noqa: E402

HOST = "127.0.0.1"
MiB = 1 << 20
CHUNK = 256 << 10  # each send; large enough that the sender is never the bottleneck
BLOCK = 4 * MiB  # the payload repeats one random block (a multiple of CHUNK)
STREAMS = 10
# No send or receive waits longer than this for progress; every transfer ends, one way or
# the other.
IO_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
# Each stream starts with a header naming its run and its index, so connections that are
# not part of the current run (a readiness probe the tunnel passes on late) are dropped.
HEADER = struct.Struct("!8sI")
PORT_OPENED = re.compile(r"Port (\d+) opened for session (\S+)\. Waiting for connections")


# --- the payload ---------------------------------------------------------------------


@functools.cache
def block() -> memoryview:
    return memoryview(os.urandom(BLOCK))


def payload_chunks(length: int) -> Iterator[memoryview]:
    """The payload of one stream, ``length`` bytes, as views of the random block."""
    source = block()
    for offset in range(0, length, CHUNK):
        start = offset % BLOCK
        yield source[start : start + min(CHUNK, length - offset)]


@functools.cache
def expected_digest(length: int) -> str:
    digest = hashlib.sha256()
    for chunk in payload_chunks(length):
        digest.update(chunk)
    return digest.hexdigest()


# --- the sink ------------------------------------------------------------------------


@dataclass
class Run:
    """One measurement at the sink: the streams it expects and what each delivered.
    A run with no segments is a stall: the sink holds its connections and reads nothing."""

    segments: list[memoryview]
    tag: bytes = field(default_factory=lambda: secrets.token_bytes(HEADER.size - 4))
    received: list[int] = field(init=False)
    overflow: list[bool] = field(init=False)
    finished_at: list[float] = field(init=False)
    pending: int = field(init=False)
    errors: list[str] = field(default_factory=list)
    held: list[socket.socket] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        count = len(self.segments)
        self.received, self.overflow = [0] * count, [False] * count
        self.finished_at = [0.0] * count
        self.pending = count

    def finish(self, index: int, received: int, overflow: bool, error: str | None) -> None:
        with self.lock:
            self.received[index], self.overflow[index] = received, overflow
            self.finished_at[index] = time.perf_counter()
            if error:
                self.errors.append(f"stream {index}: {error}")
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


class Sink:
    """The service behind every tunnel: a loopback listener that stores each stream of the
    current run in its own segment of one preallocated buffer."""

    def __init__(self, capacity: int) -> None:
        # Filled, not just allocated, so the page faults happen here and not on the clock.
        self.buffer = memoryview(bytearray(b"\xa5") * capacity)
        self.listener = socket.create_server((HOST, 0))
        self.port = int(self.listener.getsockname()[1])
        self.run: Run | None = None
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self) -> None:
        """Until close() shuts the listener down, which makes accept() raise."""
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def serve(self, connection: socket.socket) -> None:
        connection.settimeout(IO_TIMEOUT)
        try:
            header = recv_exactly(connection, HEADER.size)
        except OSError:
            header = b""
        run = self.run
        if run is None or len(header) < HEADER.size:
            connection.close()
            return
        tag, index = HEADER.unpack(header)
        if tag != run.tag or index >= max(1, len(run.segments)):
            connection.close()
        elif not run.segments:
            run.held.append(connection)  # a stall: keep it open, never read
        else:
            with connection:
                try:
                    received, overflow = fill(connection, run.segments[index])
                    run.finish(index, received, overflow, None)
                except OSError as exc:
                    run.finish(index, 0, False, f"{type(exc).__name__}: {exc}")

    def start(self, streams: int, length: int) -> Run:
        self.run = Run([self.buffer[i * length : (i + 1) * length] for i in range(streams)])
        return self.run

    def start_stall(self) -> Run:
        self.run = Run([])
        return self.run

    def end(self, run: Run) -> None:
        self.run = None
        for connection in run.held:
            connection.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def recv_exactly(connection: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer if the peer closes first."""
    data = b""
    while len(data) < size:
        more = connection.recv(size - len(data))
        if not more:
            break
        data += more
    return data


def fill(connection: socket.socket, segment: memoryview) -> tuple[int, bool]:
    """Read the stream into ``segment`` until end of stream. Returns the bytes read and
    whether more arrived than the segment holds (the stream then cannot match)."""
    received = 0
    while received < len(segment):
        got = connection.recv_into(segment[received:])
        if got == 0:
            return received, False
        received += got
    return received, connection.recv(1) != b""


# --- the sender ----------------------------------------------------------------------


def send_stream(port: int, tag: bytes, index: int, length: int, errors: list[str]) -> None:
    try:
        with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as connection:
            connection.sendall(HEADER.pack(tag, index))
            for chunk in payload_chunks(length):
                connection.sendall(chunk)
            connection.shutdown(socket.SHUT_WR)
    except OSError as exc:
        errors.append(f"sender {index}: {type(exc).__name__}: {exc}")


@dataclass
class Transfer:
    streams: int
    length: int
    seconds: float
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.streams * self.length / self.seconds / 1e6


def transfer(sink: Sink, port: int, streams: int, length: int) -> Transfer:
    """Send ``streams`` parallel streams of ``length`` bytes through ``port``; time them
    from the first connect to the sink's last end of stream, then check every digest."""
    run = sink.start(streams, length)
    sender_errors: list[str] = []
    senders = [
        threading.Thread(target=send_stream, args=(port, run.tag, i, length, sender_errors))
        for i in range(streams)
    ]
    began = time.perf_counter()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(IO_TIMEOUT * 60)
    finished = run.done.wait(IO_TIMEOUT * 2)
    seconds = (max(run.finished_at) if finished else time.perf_counter()) - began
    sink.end(run)
    problems = sender_errors + run.errors
    if not finished:
        problems.append(f"{run.pending} of {streams} streams never ended at the sink")
    for i, segment in enumerate(run.segments):
        if run.overflow[i] or run.received[i] != length:
            got = f"{run.received[i]}{'+' if run.overflow[i] else ''}"
            problems.append(f"stream {i}: {got} bytes arrived, {length} sent")
        elif hashlib.sha256(segment).hexdigest() != expected_digest(length):
            problems.append(f"stream {i}: sha256 differs")
    return Transfer(streams, length, seconds, problems)


# --- memory --------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: sshd serves each connection in children of its own."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            children[parent].append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children[current])
    return tree


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants; 0 for processes already gone."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass
class Sample:
    label: str
    sent: int | None
    rss: dict[str, int]


@dataclass
class Stall:
    samples: list[Sample]
    blocked_after: float | None
    error: str | None = None


def rss_of(processes: dict[str, int]) -> dict[str, int]:
    return {name: rss_bytes(pid) for name, pid in processes.items()}


def stall(sink: Sink, tunnel: Tunnel, idle: Sample, seconds: int) -> Stall:
    """Write as fast as the path takes bytes to a sink that reads nothing, sampling once
    a second what the sender got in and the RSS of the path's processes. ``idle`` is the
    RSS sampled when the tunnel had just opened, before any transfer."""
    port, processes = tunnel.port, tunnel.processes
    run = sink.start_stall()
    state: dict[str, Any] = {"sent": 0, "blocked_at": None, "error": None}
    progress_at = 0.0
    stop = threading.Event()

    def writer() -> None:
        nonlocal progress_at
        try:
            with socket.create_connection((HOST, port), timeout=IO_TIMEOUT) as connection:
                connection.sendall(HEADER.pack(run.tag, 0))
                began = time.perf_counter()
                # A short timeout: a send that makes no progress for it means blocked.
                connection.settimeout(0.25)
                chunks = payload_chunks(1 << 62)
                while not stop.is_set():
                    try:
                        state["sent"] += connection.send(next(chunks))
                        progress_at = time.perf_counter() - began
                    except TimeoutError:
                        if state["blocked_at"] is None:
                            state["blocked_at"] = progress_at
        except OSError as exc:
            state["error"] = f"{type(exc).__name__}: {exc}"

    samples = [idle, Sample("before", None, rss_of(processes))]
    thread = threading.Thread(target=writer)
    thread.start()
    for second in range(1, seconds + 1):
        time.sleep(1)  # the sampling interval, not a wait for anything
        samples.append(Sample(f"{second} s", state["sent"], rss_of(processes)))
    stop.set()
    thread.join(IO_TIMEOUT)
    sink.end(run)
    return Stall(samples, state["blocked_at"], state["error"])


# --- the paths -----------------------------------------------------------------------


@dataclass
class Tunnel:
    """Where to connect to reach the sink, and the processes that carry the bytes."""

    port: int
    processes: dict[str, int]


class PathFailed(Exception):
    """The path could not be set up; the message says why."""


def wait_for_port(port: int, process: subprocess.Popen[Any], what: str) -> None:
    """Until ``port`` accepts, or ``process`` exits, or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PathFailed(f"{what} exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, port), timeout=1).close()
            return
        time.sleep(0.05)
    raise PathFailed(f"{what} did not listen on {port} within {READY_TIMEOUT:.0f} s")


@contextlib.contextmanager
def direct(sink_port: int, _work: Path) -> Iterator[Tunnel]:
    yield Tunnel(sink_port, {})


@contextlib.contextmanager
def ssh_forward(sink_port: int, work: Path) -> Iterator[Tunnel]:
    """``ssh -N -L`` to a real sshd on loopback, with OpenSSH's default cipher."""
    with running_sshd(work / "sshd") as server:
        local_port = free_port()
        forward = f"{HOST}:{local_port}:{HOST}:{sink_port}"
        options = ["-N", "-o", "ExitOnForwardFailure=yes", "-L", forward]
        ssh = subprocess.Popen(server.ssh_args(options=options), stdin=subprocess.DEVNULL)
        try:
            wait_for_port(local_port, ssh, "ssh -L")
            yield Tunnel(local_port, {"ssh": ssh.pid, "sshd": server.pid})
        finally:
            stop_process(ssh)


class OutputLines:
    """Every line a process writes to stdout and stderr, read in threads so neither pipe
    fills, kept in a queue; the last few are kept for error messages."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.recent: collections.deque[str] = collections.deque(maxlen=20)
        for stream in (process.stdout, process.stderr):
            threading.Thread(target=self.read, args=(stream,), daemon=True).start()

    def read(self, stream: IO[str] | None) -> None:
        if stream is not None:
            for line in stream:
                self.recent.append(line.rstrip())
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first line matching ``pattern``; None if both streams end or time runs out."""
        deadline, ended = time.monotonic() + timeout, 0
        while ended < 2 and (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                ended += 1
            elif match := pattern.search(line):
                return match
        return None


def drain(stream: IO[str] | None) -> None:
    """Read and drop a stream, so a chatty process never blocks on a full pipe."""
    if stream is not None:
        for _ in stream:
            pass


@contextlib.contextmanager
def hatchway_forward(sink_port: int, work: Path) -> Iterator[Tunnel]:
    """``hatchway up`` as bench/session.py starts it, then a port session to the sink on a
    local port the client picks; its "Port N opened" line says which."""
    try:  # imported here: a broken hatchway must not stop the other paths
        from bench.session import Stack
    except Exception as exc:
        raise PathFailed(f"cannot import bench/session.py: {type(exc).__name__}: {exc}") from exc
    try:
        stack = Stack(work / "hatchway")
    except SystemExit as exc:  # Stack's way of saying hatchway up did not start
        raise PathFailed(str(exc)) from None
    threading.Thread(target=drain, args=(stack.process.stdout,), daemon=True).start()
    try:
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hatchway",
                "start-session",
                "--target",
                stack.target,
                "--document-name",
                "AWS-StartPortForwardingSession",
                "--parameters",
                f"portNumber={sink_port},localPortNumber=0",
                "--endpoint-url",
                stack.url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            output = OutputLines(client)
            opened = output.wait_for(PORT_OPENED, READY_TIMEOUT)
            if opened is None:
                status = client.poll()
                state = "still running" if status is None else f"exited with status {status}"
                said = " | ".join(output.recent) or "nothing"
                raise PathFailed(f"no 'Port N opened' line from start-session ({state}): {said}")
            yield Tunnel(int(opened.group(1)), {"client": client.pid, "up": stack.process.pid})
        finally:
            stop_process(client)
    finally:
        stack.stop()


# --- the report ----------------------------------------------------------------------


@dataclass
class PathResult:
    name: str
    single: Transfer | None = None
    parallel: Transfer | None = None
    stall: Stall | None = None
    failure: str | None = None

    @property
    def problems(self) -> list[str]:
        runs = [run for run in (self.single, self.parallel) if run is not None]
        problems = [problem for run in runs for problem in run.problems]
        if self.stall is not None and self.stall.error is not None:
            problems.append(f"stalled writer: {self.stall.error}")
        return problems

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.problems


def measure(
    name: str, opener: Callable[[int, Path], Any], sink: Sink, size: int, stall_seconds: int
) -> PathResult:
    """Every figure for one path. A failure part way keeps the figures measured so far."""
    result = PathResult(name)
    print(f"measuring {name} ...", file=sys.stderr, flush=True)
    try:
        with tempfile.TemporaryDirectory() as work, opener(sink.port, Path(work)) as tunnel:
            idle = Sample("idle", None, rss_of(tunnel.processes))
            result.single = transfer(sink, tunnel.port, 1, size)
            result.parallel = transfer(sink, tunnel.port, STREAMS, size // STREAMS)
            result.stall = stall(sink, tunnel, idle, stall_seconds)
    except PathFailed as exc:
        result.failure = str(exc)
    except Exception as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
    return result


def mib(value: int) -> str:
    return f"{value / MiB:8.1f} MiB"


def print_throughput(results: list[PathResult], size: int) -> None:
    part = size // STREAMS
    print(
        f"Throughput: {size / MiB:.0f} MiB in 1 stream; {STREAMS} streams of {part / MiB:.1f} MiB"
    )
    for result in results:
        if result.failure is not None:
            print(f"  {result.name} path failed: {result.failure}")
        rates = [
            f"{run.rate:8.1f} MB/s" if run is not None else "         -     "
            for run in (result.single, result.parallel)
        ]
        check = "sha256 ok" if not result.problems else "MISMATCH: " + "; ".join(result.problems)
        if result.single is not None:
            print(f"  {result.name:9} 1 stream {rates[0]}   {STREAMS} streams {rates[1]}   {check}")
    by_name = {r.name: r for r in results}
    for top, bottom in (("hatchway", "direct"), ("hatchway", "ssh -L"), ("ssh -L", "direct")):
        ratios = []
        for attribute in ("single", "parallel"):
            upper = getattr(by_name[top], attribute)
            lower = getattr(by_name[bottom], attribute)
            ratios.append(f"{upper.rate / lower.rate:5.2f}" if upper and lower else "    -")
        label = f"{top}/{bottom}:"
        print(f"  ratio {label:17} {ratios[0]} (1 stream)  {ratios[1]} ({STREAMS} streams)")


def print_stalls(results: list[PathResult], seconds: int) -> None:
    print(f"Reader stalled for {seconds} s: bytes the sender got in, RSS of the path's processes")
    for result in results:
        if result.stall is None:
            continue
        samples = result.stall.samples
        names = list(samples[0].rss)
        print(f"  {result.name:9} {'sent':>12}" + "".join(f"{name:>13}" for name in names))
        for sample in samples:
            sent = mib(sample.sent) if sample.sent is not None else " " * 12
            print(f"    {sample.label:7} {sent}" + "".join(mib(sample.rss[n]) for n in names))
        blocked = result.stall.blocked_after
        print(
            f"    writer blocked after {blocked:.2f} s"
            if blocked is not None
            else "    writer never blocked"
        )
        if result.stall.error:
            print(f"    writer failed: {result.stall.error}")


def parse_size(text: str) -> int:
    """Bytes, with an optional K, M or G (binary) suffix: 64M, 1G."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    unit = units.get(text[-1:].upper(), 1)
    return int(text[:-1] if unit > 1 else text) * unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=parse_size, default=1 << 30, dest="size")
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of --bytes")
    parser.add_argument("--stall-seconds", type=int, default=5)
    args = parser.parse_args()
    size = 64 * MiB if args.quick else args.size
    sink = Sink(size)
    # Off the clock: the digests every stream is checked against.
    expected_digest(size)
    expected_digest(size // STREAMS)
    try:
        results = [
            measure(name, opener, sink, size, args.stall_seconds)
            for name, opener in (
                ("direct", direct),
                ("ssh -L", ssh_forward),
                ("hatchway", hatchway_forward),
            )
        ]
    finally:
        sink.close()
    print_throughput(results, size)
    print_stalls(results, args.stall_seconds)
    sys.exit(0 if all(result.ok for result in results) else 1)


if __name__ == "__main__":
    main()
