"""The cluster example in deploy/ stays true: HAProxy accepts its config, with and without
the optional fast path, and every setting the node's environment file names is one that
`hatchway server` reads."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hatchway.cli import server
from tests.certs import self_signed
from tests.cluster import HAPROXY

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def runnable_here(config: str, folder: Path) -> str:
    """The example's config with its certificate and admin socket moved into ``folder``
    (HAProxy loads the certificate to check the config)."""
    issued = self_signed(folder, ["hatchway.example"])
    bundle = folder / "hatchway.pem"
    bundle.write_bytes(issued.cert.read_bytes() + issued.key.read_bytes())
    config = config.replace("/etc/haproxy/certs/hatchway.pem", str(bundle))
    return config.replace("/run/haproxy/admin.sock", str(folder / "admin.sock"))


def with_fast_path(config: str) -> str:
    """The lines that hash data channels on their session id, uncommented."""
    config = re.sub(r"^    #(acl|use_backend) ", r"    \1 ", config, flags=re.M)
    config = re.sub(r"^#backend ", "backend ", config, flags=re.M)
    return re.sub(r"^#(    (?:balance|hash-type|server) )", r"\1", config, flags=re.M)


@pytest.mark.parametrize("fast_path", [False, True], ids=["round-robin", "fast-path"])
def test_haproxy_accepts_the_example_config(tmp_path, fast_path):
    config = runnable_here((DEPLOY / "haproxy.cfg").read_text(), tmp_path)
    if fast_path:
        config = with_fast_path(config)
        assert "use_backend data_channels if data_channel" in config
        assert "    balance uri path-only" in config
    (tmp_path / "haproxy.cfg").write_text(config)
    check = subprocess.run(
        [str(HAPROXY), "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "timeout tunnel 1h" in config and "balance roundrobin" in config


def test_the_node_environment_names_only_settings_the_server_reads():
    envvars = {param.envvar for param in server.params if getattr(param, "envvar", None)}
    text = (DEPLOY / "node.env.example").read_text()
    named = set(re.findall(r"^#?(HATCHWAY_[A-Z_]+)=", text, flags=re.M))
    assert named, text
    assert named <= envvars, named - envvars
    unit = (DEPLOY / "hatchway-server.service").read_text()
    assert "EnvironmentFile=/etc/hatchway/node.env" in unit
    assert set(re.findall(r"^Environment=(HATCHWAY_[A-Z_]+)=", unit, flags=re.M)) <= envvars
    for needed in ("HATCHWAY_NODE_NAME", "HATCHWAY_ADVERTISE_URL", "HATCHWAY_DATABASE"):
        assert needed in named
    assert {"HATCHWAY_PUBLIC_URL", "HATCHWAY_TRUSTED_PROXIES", "HATCHWAY_LISTEN"} <= named
