"""A home (the server's, and an agent's) and everything in it are readable by their owner
only: the database, keys, credentials and logs."""

import os
import stat
import subprocess
import sys
import urllib.request

from hatchway import logs
from hatchway.agent.identity import Identity
from tests.helpers import RunningServer
from tests.server.test_api_basics import raw_post


def modes(home):
    found = {home: stat.S_IMODE(os.stat(home).st_mode)}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[path] = stat.S_IMODE(os.stat(path).st_mode)
    return found


def assert_private(home):
    found = modes(home)
    loose = {
        path: oct(mode)
        for path, mode in found.items()
        if mode != (0o700 if os.path.isdir(path) else 0o600)
    }
    assert not loose, loose
    return found


def test_the_server_home_is_its_owners_only(tmp_path):
    home = tmp_path / "home"
    command = [sys.executable, "-m", "hatchway", "server", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # the mode must not depend on a strict umask in the caller's shell
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        url = process.stdout.readline().split()[4]
        assert "credentials" in process.stdout.readline()
        assert raw_post(RunningServer(url=url, home=home), b'{"State":"Active"}')[0] == 200
        with urllib.request.urlopen(url + "/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        process.terminate()
        assert process.wait(20) == 0
    found = assert_private(home)
    names = {os.path.relpath(path, home) for path in found}
    assert {".", "hatchway.db", "credentials", "logs", "logs/server.log"} <= names


def test_an_agent_home_is_its_owners_only(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "agent"
        Identity("mi-0123456789abcdef0", "http://x", "us-east-1", "AKIA", "secret").save(home)
        logs.setup(home / "logs", "agent", json_lines=False)
        logs.logging.getLogger("hatchway.test").error("written")
    finally:
        os.umask(old)
        for handler in list(logs.logging.getLogger("hatchway").handlers):
            handler.close()
            logs.logging.getLogger("hatchway").removeHandler(handler)
    found = assert_private(home)
    names = {os.path.relpath(path, home) for path in found}
    assert {".", "identity.json", "credentials", "logs", "logs/agent.log"} <= names


def test_an_existing_home_is_closed_and_its_old_files_too(tmp_path):
    home = tmp_path / "old"
    (home / "logs").mkdir(parents=True, mode=0o755)
    os.chmod(home, 0o755)
    (home / "logs" / "server.log").write_text("from an older version\n")
    os.chmod(home / "logs" / "server.log", 0o644)
    logs.setup(home / "logs", "server", json_lines=False)
    for handler in list(logs.logging.getLogger("hatchway").handlers):
        handler.close()
        logs.logging.getLogger("hatchway").removeHandler(handler)
    assert stat.S_IMODE(os.stat(home / "logs").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "logs" / "server.log").st_mode) == 0o600


def test_a_log_line_with_bytes_that_are_not_utf8_is_written_escaped(tmp_path, capsys):
    logs.setup(tmp_path / "logs", "server", json_lines=False)
    try:
        # an X-Amz-Target of b"AmazonSSM.\xc3" as aiohttp hands it over
        logs.logging.getLogger("hatchway.server").info("AmazonSSM.\udcc3")
    finally:
        for handler in list(logs.logging.getLogger("hatchway").handlers):
            handler.close()
            logs.logging.getLogger("hatchway").removeHandler(handler)
    assert "AmazonSSM.\\udcc3" in (tmp_path / "logs" / "server.log").read_text()
    assert "Logging error" not in capsys.readouterr().err
