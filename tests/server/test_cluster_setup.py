"""What each node of a cluster needs at start (issue 15): the shared master key (--master-key),
the admin credentials created once and written by every node for its operator, a clear
failure for a node whose key does not open the database, and the URL its peers reach it on."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hatchway.server.bootstrap import KEY_CHECK, WrongMasterKey, bootstrap
from hatchway.server.config import ServerConfig
from hatchway.server.keystore import Keystore, KeystoreError
from hatchway.server.storage.db import database_url, make_engine, migrate, session_factory
from tests.helpers import running_server
from tests.postgres import running_postgres


def make_key(path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
    return path


def admin_key_ids(server) -> list[str]:
    """The admin's access keys in the database, as the server sees it."""
    from sqlalchemy import select

    from hatchway.server.storage.models import AccessKey

    async def listed() -> list[str]:
        async with server.app_state().db() as db:
            query = select(AccessKey.access_key_id).where(
                AccessKey.kind == "user", AccessKey.principal == "admin"
            )
            return list(await db.scalars(query))

    return server.loop_call(listed())


def test_a_later_node_creates_no_admin_and_writes_its_credentials(tmp_path):
    key = make_key(tmp_path / "cluster.key")
    shared = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    with running_server(tmp_path / "node-1", database=shared, master_key=key) as first:
        assert first.app_state().created_credentials == str(first.credentials_file)
        created = first.admin_keys()
    with running_server(tmp_path / "node-2", database=shared, master_key=key) as second:
        assert second.app_state().created_credentials is None
        assert second.admin_keys() == created
        assert stat.S_IMODE(second.credentials_file.stat().st_mode) == 0o600
        assert admin_key_ids(second) == [created[0]]
        # The key was read, never made: neither home holds one of its own.
        assert not (tmp_path / "node-1" / "master.key").exists()
        assert not (tmp_path / "node-2" / "master.key").exists()


def test_a_credentials_file_that_exists_is_left_alone(tmp_path):
    key = make_key(tmp_path / "cluster.key")
    shared = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    with running_server(tmp_path / "node-1", database=shared, master_key=key):
        pass
    mine = tmp_path / "node-2" / "credentials"
    mine.parent.mkdir(mode=0o700)
    mine.write_text("[default]\n# the operator's own\n")
    with running_server(tmp_path / "node-2", database=shared, master_key=key):
        assert mine.read_text() == "[default]\n# the operator's own\n"


def test_a_node_with_another_master_key_stops_at_start(tmp_path):
    shared = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first_key = make_key(tmp_path / "first.key")
    other_key = make_key(tmp_path / "other.key")
    with running_server(tmp_path / "node-1", database=shared, master_key=first_key):
        pass
    with (
        pytest.raises(WrongMasterKey) as failure,
        running_server(tmp_path / "node-2", database=shared, master_key=other_key),
    ):
        pass
    assert str(failure.value) == (
        f"the master key {other_key} does not open this database's secrets: every node "
        "needs the same key"
    )
    assert not (tmp_path / "node-2" / "credentials").exists()


def test_a_database_from_before_the_check_is_checked_by_its_access_keys(tmp_path):
    home = tmp_path / "home"
    with running_server(home) as first:
        keys = first.admin_keys()
    with sqlite3.connect(home / "hatchway.db") as db:
        db.execute("delete from settings where key = ?", (KEY_CHECK,))
    original = (home / "master.key").read_bytes()
    (home / "master.key").write_bytes(os.urandom(32))
    with pytest.raises(WrongMasterKey), running_server(home):
        pass
    (home / "master.key").write_bytes(original)
    with running_server(home) as again:
        assert again.admin_keys() == keys
    with sqlite3.connect(home / "hatchway.db") as db:
        assert db.execute("select count(*) from settings where key = ?", (KEY_CHECK,)).fetchone()


def test_a_named_master_key_must_exist_and_is_never_made(tmp_path):
    missing = tmp_path / "keys" / "master.key"
    with (
        pytest.raises(KeystoreError) as failure,
        running_server(tmp_path / "home", master_key=missing),
    ):
        pass
    assert str(failure.value).startswith(f"the master key {missing} does not exist: ")
    assert not missing.exists()
    assert not (tmp_path / "home" / "master.key").exists()


def test_the_master_key_in_the_home_is_made_once_and_kept_private(tmp_path):
    home = tmp_path / "home"
    with running_server(home):
        made = (home / "master.key").read_bytes()
    os.chmod(home / "master.key", 0o644)  # say, copied in from another node
    with running_server(home):
        pass
    assert (home / "master.key").read_bytes() == made
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("contents", "mode", "said"),
    [
        (None, None, "the master key {key} does not exist: "),
        (os.urandom(32), 0o644, "the master key {key} is open to other users (mode 0644): "),
        (os.urandom(31), 0o600, "the master key {key} is damaged: it holds 31 bytes, not 32"),
    ],
    ids=["missing", "open-to-others", "damaged"],
)
def test_the_server_command_says_what_is_wrong_with_the_key_in_one_line(
    tmp_path, contents, mode, said
):
    key = tmp_path / "master.key"
    if contents is not None:
        key.write_bytes(contents)
        os.chmod(key, mode)
    command = [sys.executable, "-m", "hatchway", "server", "--listen", "127.0.0.1:0"]
    command += ["--home", str(tmp_path / "home")]
    result = subprocess.run(
        command,
        env=os.environ | {"HATCHWAY_MASTER_KEY": str(key)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: " + said.format(key=key)), result.stderr
    assert (contents is None) == (not key.exists())


def test_the_peer_url_is_the_advertised_one_or_the_listen_address(monkeypatch):
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "machine-7")
    home = Path("/nonexistent")
    assert ServerConfig(home, port=8080).peer_url == "http://127.0.0.1:8080"
    assert ServerConfig(home, host="::1", port=8080).peer_url == "http://[::1]:8080"
    assert ServerConfig(home, host="0.0.0.0", port=81).peer_url == "http://machine-7:81"
    assert ServerConfig(home, host="::", port=81).peer_url == "http://machine-7:81"
    tls = ServerConfig(home, host="10.0.0.5", port=443, tls_cert=home)
    assert tls.peer_url == "https://10.0.0.5:443"
    advertised = ServerConfig(home, advertise_url="https://node-1.internal:8443/", port=0)
    assert advertised.peer_url == "https://node-1.internal:8443"


def test_port_zero_is_bound_before_the_app_starts_so_the_peer_url_has_the_real_port(tmp_path):
    with running_server(tmp_path / "home") as server:  # --listen 127.0.0.1:0
        config = server.app_state().config
        assert config.port != 0
        assert config.peer_url == server.url


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("ftp://node-1", "is not http(s)://HOST[:PORT]"),
        ("http://node-1:80/api", "has more than a scheme, host and port"),
        ("http://node-1:port", "Port could not be cast"),
    ],
)
def test_an_advertise_url_that_peers_cannot_use_is_refused(tmp_path, value, said):
    command = [sys.executable, "-m", "hatchway", "server", "--home", str(tmp_path / "home")]
    result = subprocess.run(
        [*command, "--advertise-url", value], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert said in result.stderr


def test_nodes_on_postgresql_share_one_admin_even_when_they_bootstrap_together(tmp_path):
    """On PostgreSQL, two nodes that bootstrap at once race on the settings and the admin:
    one creates them, the other finds them (its transaction retried) and writes the same
    credentials; a third with another key stops."""
    key = make_key(tmp_path / "cluster.key")
    keystore = Keystore.load_or_create(tmp_path, key)
    homes = [tmp_path / f"node-{n}" for n in (1, 2)]
    for home in homes:
        home.mkdir()

    async def bootstrap_together(url: str) -> list[dict[str, str]]:
        engine = make_engine(database_url(tmp_path, url))
        try:
            await asyncio.gather(migrate(engine), migrate(engine))
            db = session_factory(engine)
            now = datetime.now(UTC)
            return list(await asyncio.gather(*(bootstrap(db, keystore, h, now) for h in homes)))
        finally:
            await engine.dispose()

    with running_postgres() as url:
        settings = asyncio.run(bootstrap_together(url))
        assert [s.get("created_credentials") is not None for s in settings].count(True) == 1
        for name in ("account", "pagination_secret"):
            assert settings[0][name] == settings[1][name]
        files = [(home / "credentials").read_text() for home in homes]
        assert files[0] == files[1]
        with running_server(tmp_path / "node-3", database=url, master_key=key) as third:
            assert third.app_state().created_credentials is None
            assert third.credentials_file.read_text() == files[0]
            assert len(admin_key_ids(third)) == 1
        other = make_key(tmp_path / "other.key")
        with (
            pytest.raises(WrongMasterKey),
            running_server(tmp_path / "node-4", database=url, master_key=other),
        ):
            pass
