"""A cluster's two figures: port forwarding across nodes against the same node, and the
time a session's data stops when the node carrying it is killed.

Three ``hatchway server`` nodes on one PostgreSQL behind HAProxy (tests/cluster.py), all on
this machine, and one ``hatchway agent run`` process.

- Throughput. The agent is registered with node-1 itself (not through the balancer), so its
  data channels always reach node-1. The client goes through the balancer with HAProxy
  told to send it only to node-1 (same node), or never to node-1 (the client's frames then
  cross the link between two nodes). Each run moves ``--mebibytes`` each way through an
  echo server and checks their sha256; the same-node and cross-node runs alternate, and the
  ratio is cross over same, from the medians. The goal is 0.8 or more.
- Failover. A second agent, registered through the balancer, and a port forward through
  it carrying 1 KiB echoes back to back. ``--kills`` times, the node that is the session's
  home (the node pairing its two ends, from the database) is killed with SIGKILL; the
  figure is the time from the kill to the completion of the first echo sent once the
  process is gone (an echo already under way may complete before it dies). The killed
  node restarts, and HAProxy sees it up, before the next kill. The goal is under 3 s.

    .venv/bin/python bench/cluster.py [--mebibytes 256] [--rounds 3] [--kills 10]

Every process shares the machine's cores with the others and with this script, so the
absolute figures are low on a small machine; the ratio is what compares.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster import Cluster, running_cluster
from tests.e2e.ports import EchoServer, forwarding, hashed_echo_round_trip

ECHO_BYTES = 1024


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pin_client(cluster: Cluster, only: str | None, never: str | None) -> None:
    """HAProxy sends new connections only to ``only``, or to every node but ``never``."""
    for node in cluster.nodes:
        ready = node.name == only if only else node.name != never
        state = "ready" if ready else "maint"
        cluster.balancer.command(f"set server nodes/{node.name} state {state}")


def throughput(cluster: Cluster, target: str, mebibytes: int) -> float:
    """MiB/s each way through a port forward, sha256 checked."""
    with (
        EchoServer() as echo,
        forwarding(
            cluster.server().env(), target, f"portNumber={echo.port},localPortNumber=0"
        ) as tunnel,
    ):
        started = time.perf_counter()
        sent, received, count = hashed_echo_round_trip(tunnel.port, mebibytes)
        seconds = time.perf_counter() - started
        tunnel.stop()
    if received != sent or count != mebibytes << 20:
        raise SystemExit(f"the bytes that came back differ ({count} bytes)")
    return mebibytes / seconds


def home_of(cluster: Cluster, session_id: str) -> str:
    (row,) = cluster.query(f"select relay_node from sessions where session_id = '{session_id}'")
    return row[0]


class Echoes:
    """1 KiB echoes back to back through a tunnel, each time-stamped when sent and when
    back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.done: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        payload = os.urandom(ECHO_BYTES)
        try:
            while not self.stop.is_set():
                sent = time.monotonic()
                self.sock.sendall(payload)
                got = b""
                while len(got) < ECHO_BYTES:
                    chunk = self.sock.recv(ECHO_BYTES - len(got))
                    if not chunk:
                        raise ConnectionError("the tunnel closed")
                    got += chunk
                if got != payload:
                    raise ValueError("an echo came back different")
                self.done.append((sent, time.monotonic()))
        except BaseException as exc:
            self.error = exc

    def first_sent_after(self, moment: float, timeout: float = 120) -> float:
        """When the first echo sent after ``moment`` came back."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise SystemExit(f"the echoes failed: {self.error}")
            after = [back for sent, back in self.done[-50:] if sent > moment]
            if after:
                return after[0]
            time.sleep(0.005)  # a benchmark's poll, not a test's wait
        raise SystemExit("no echo came back after the kill")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.sock.close()


def failover(cluster: Cluster, kills: int) -> list[float]:
    agent = cluster.agent("roaming-agent")
    seconds: list[float] = []
    with (
        EchoServer() as echo,
        forwarding(
            cluster.server().env(),
            agent.instance_id,
            f"portNumber={echo.port},localPortNumber=0",
        ) as tunnel,
    ):
        echoes = Echoes(tunnel.port)
        try:
            echoes.first_sent_after(time.monotonic())
            for number in range(kills):
                victim = cluster.node(home_of(cluster, tunnel.session_id))
                killed = time.monotonic()
                victim.kill()  # returns once the process is gone
                flowing = echoes.first_sent_after(time.monotonic())
                seconds.append(flowing - killed)
                print(f"  kill {number + 1}: {victim.name}, data again after {seconds[-1]:.2f} s")
                victim.start()
                cluster.wait_backend(victim.name, "UP")
        finally:
            echoes.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mebibytes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hatchway-cluster-bench-") as folder:
        with running_cluster(Path(folder) / "cluster") as cluster:
            print(f"three nodes behind HAProxy; load average {loadavg()}")
            pinned = cluster.agent("pinned-agent", via=cluster.nodes[0])
            same: list[float] = []
            cross: list[float] = []
            for round_number in range(args.rounds):
                pin_client(cluster, only="node-1", never=None)
                same.append(throughput(cluster, pinned.instance_id, args.mebibytes))
                pin_client(cluster, only=None, never="node-1")
                cross.append(throughput(cluster, pinned.instance_id, args.mebibytes))
                print(
                    f"  round {round_number + 1}: same node {same[-1]:.1f} MiB/s, "
                    f"across nodes {cross[-1]:.1f} MiB/s (load average {loadavg()})"
                )
            pin_client(cluster, only=None, never=None)
            ratio = statistics.median(cross) / statistics.median(same)
            print(
                f"port forward, {args.mebibytes} MiB each way: same node "
                f"{statistics.median(same):.1f} MiB/s, across nodes "
                f"{statistics.median(cross):.1f} MiB/s (medians of {args.rounds}); "
                f"ratio {ratio:.2f} (goal 0.8)"
            )
            seconds = sorted(failover(cluster, args.kills))
            p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
            print(
                f"failover over {len(seconds)} kills of the session's home node: median "
                f"{statistics.median(seconds):.2f} s, p95 {p95:.2f} s (goal under 3 s); "
                f"load average {loadavg()}"
            )


if __name__ == "__main__":
    main()
