"""A Hatchway cluster for tests (issue 15): N ``hatchway server`` processes on one private
PostgreSQL, sharing one master key, behind a real HAProxy from Debian's package (make test
installs it) that balances round-robin.

    with running_cluster(tmp_path / "cluster") as cluster:
        ssm = cluster.server().client()          # boto3 through the load balancer
        agent = cluster.agent()                  # registered and Online through it
        cluster.nodes[0].kill()                  # SIGKILL; .stop() is SIGTERM
        cluster.wait_backend("node-1", "DOWN")   # as HAProxy's health checks see it
        cluster.nodes[0].start()                 # again, on the same port

Every node gets its own --home, --node-name node-N, --advertise-url on its own loopback
port, the shared --master-key, --public-url set to the load balancer's URL (so StreamUrls
name it, never a node), and --trusted-proxies for HAProxy on loopback. node-1 starts
alone first and creates the admin credentials; the others start together after it.

HAProxy adds ``X-Hatchway-Backend: node-N`` to every answer, so a test can tell which node
served a request; its admin socket (``cluster.balancer.command``) reports and changes the
servers' states.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from hatchway.up import node_kms_policy
from tests.e2e.ports import free_port
from tests.e2e.processes import AgentProcess, ServerProcess, wait_for_node
from tests.helpers import REGION, RunningServer, wait_until
from tests.postgres import PostgresServer, postgres_bin, postgres_server
from tests.sshd import stop_process

HAPROXY = Path("/usr/sbin/haproxy")
BACKEND_HEADER = "X-Hatchway-Backend"
# How long a node may take to start on a busy machine (migrations run on the first).
START_SECONDS = 120.0
# HAProxy checks each node's /healthz this often, and marks it down after FALL failures:
# a killed node stops getting new connections within about INTERVAL * FALL.
CHECK_INTERVAL_MS = 500
CHECK_FALL = 2

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 10) -> tuple[int, Message, bytes]:
    """A GET on a fresh connection (so each one is balanced on its own): status, headers
    (looked up case-blind: HAProxy writes the names it adds in lower case) and body. HTTP
    errors are answers too."""
    try:
        with _NO_PROXY.open(url, timeout=timeout) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@dataclass
class Node:
    """One ``hatchway server`` of the cluster, on a port it keeps across restarts."""

    name: str
    process: ServerProcess

    @property
    def url(self) -> str:
        """Its own address (its --advertise-url): for reaching it around the balancer."""
        return self.process.url

    @property
    def home(self) -> Path:
        return self.process.home

    @property
    def log(self) -> Path:
        return self.process.log

    @property
    def running(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start it (again, on the same port, home and arguments) and wait for /healthz."""
        self.process.spawn()
        self.process.wait_ready(timeout)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown, as in a rolling restart (SIGKILL after 10 s)."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self.process.kill()

    def server(self) -> RunningServer:
        """This node alone, with the admin credentials of its own home."""
        return RunningServer(url=self.url, home=self.home)


class LoadBalancer:
    """HAProxy in front of the nodes, as a child process with its config in ``folder``."""

    def __init__(self, folder: Path, nodes: list[Node]) -> None:
        self.folder, self.nodes = folder, nodes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "haproxy.cfg"
        self.socket = folder / "haproxy.sock"
        self.log = folder / "haproxy.out"
        self.process: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        servers = "\n".join(
            f"    server {node.name} 127.0.0.1:{node.process.port}" for node in self.nodes
        )
        return f"""\
global
    maxconn 4096
    log stdout format raw local0 info
    stats socket {self.socket} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    maxconn 4096
    timeout connect 5s
    timeout client 90s
    timeout server 90s
    # Once a connection is upgraded to a WebSocket (control and data channels).
    timeout tunnel 1h
    timeout http-request 30s
    # A request whose connection to a node failed (a node just killed, not yet marked
    # down) is tried again on another node.
    retries 3
    option redispatch 1

frontend hatchway
    bind 127.0.0.1:{self.port}
    option forwardfor
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    default-server check inter {CHECK_INTERVAL_MS} fall {CHECK_FALL} rise 1
    # Which node answered, for the tests.
    http-response set-header {BACKEND_HEADER} %s
{servers}
"""

    def start(self) -> None:
        if not HAPROXY.exists():
            raise RuntimeError("HAProxy is not installed: make test installs Debian's haproxy")
        self.config.write_text(self.config_text())
        check = subprocess.run(
            [str(HAPROXY), "-c", "-f", str(self.config)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(HAPROXY), "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until(self._answers, START_SECONDS, "HAProxy's admin socket")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"HAProxy exited: {self.log.read_text()}")
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def command(self, line: str) -> str:
        """One command on HAProxy's admin socket (``show stat``, ``disable server
        nodes/node-1``...); its answer."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(10)
            admin.connect(str(self.socket))
            admin.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := admin.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each node's state as HAProxy's checks see it: UP, DOWN, MAINT... (a transition
        under way, such as "UP 1/2", counts as the state it is leaving)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"].split()[0]
            for row in rows
            if row["pxname"] == "nodes" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)


@dataclass
class Cluster:
    folder: Path
    database: PostgresServer
    master_key: Path
    nodes: list[Node]
    balancer: LoadBalancer
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def lb_url(self) -> str:
        return self.balancer.url

    def node(self, name: str) -> Node:
        (found,) = [node for node in self.nodes if node.name == name]
        return found

    def server(self) -> RunningServer:
        """The cluster as a client sees it: the balancer's URL, with the admin credentials
        (node-1 wrote them; every node's are the same)."""
        return RunningServer(url=self.lb_url, home=self.nodes[0].home)

    def wait_backend(self, name: str, state: str, timeout: float = 60) -> None:
        """Until HAProxy's health checks see ``name`` in ``state`` (UP, DOWN)."""
        wait_until(
            lambda: self.balancer.states().get(name) == state,
            timeout,
            f"HAProxy seeing {name} {state}",
        )

    def agent(self, name: str = "agent", via: Node | None = None) -> AgentProcess:
        """A ``hatchway agent run`` process registered through the balancer (its identity
        names the balancer's URL, so it reconnects through it), running, and Online. Its
        role may decrypt with the account's KMS keys, for encrypted sessions. With ``via``,
        it is registered with that node and keeps to it (a benchmark's fixed placement)."""
        server = self.server()
        if via is not None:
            server = RunningServer(url=via.url, home=self.nodes[0].home)
        iam = server.client("iam")
        (admin,) = [user for user in iam.list_users()["Users"] if user["UserName"] == "admin"]
        account = admin["Arn"].split(":")[4]
        agent = AgentProcess(server, self.folder / name)
        self.agents.append(agent)
        iam.put_role_policy(
            RoleName="e2e",
            PolicyName="sessions",
            PolicyDocument=json.dumps(node_kms_policy(REGION, account)),
        )
        agent.start()
        wait_for_node(server, agent.instance_id, ("Online", "connected"))
        return agent

    def query(self, sql: str) -> list[list[str]]:
        """The rows of ``sql`` on the cluster's database, as psql prints them."""
        psql = str(postgres_bin() / "psql")
        out = subprocess.run(
            [psql, "-At", "-F", "\t", self.database.url, "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def logs(self) -> str:
        """The tail of every process's output, for a failing assertion's message."""
        parts = []
        for path in [*(node.log for node in self.nodes), self.balancer.log]:
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def make_master_key(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    return path


@contextlib.contextmanager
def running_cluster(
    folder: Path, size: int = 3, server_args: tuple[str, ...] = ()
) -> Iterator[Cluster]:
    """``size`` nodes on a fresh PostgreSQL behind HAProxy; all stopped afterwards.
    ``server_args`` go to every node's ``hatchway server`` (say, ``--agent-grace 5``)."""
    folder.mkdir(parents=True, exist_ok=True)
    master_key = make_master_key(folder / "master.key")
    with postgres_server() as database:
        nodes: list[Node] = []
        balancer = LoadBalancer(folder, nodes)
        for number in range(1, size + 1):
            name, port = f"node-{number}", free_port()
            args = (
                *("--database", database.url, "--node-name", name),
                *("--advertise-url", f"http://127.0.0.1:{port}"),
                *("--master-key", str(master_key), "--public-url", balancer.url),
                *("--trusted-proxies", "127.0.0.1/32", *server_args),
            )
            nodes.append(Node(name, ServerProcess(folder / name, *args, port=port)))
        cluster = Cluster(folder, database, master_key, nodes, balancer)
        try:
            # The first node migrates the database and creates the admin; the others
            # find both, so they start together once it is up.
            nodes[0].start()
            for node in nodes[1:]:
                node.process.spawn()
            for node in nodes[1:]:
                node.process.wait_ready(START_SECONDS)
            balancer.start()
            for node in nodes:
                cluster.wait_backend(node.name, "UP")
            yield cluster
        finally:
            for agent in cluster.agents:
                agent.kill()
            balancer.stop()
            for node in nodes:
                node.stop()
