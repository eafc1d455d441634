import os
import stat

import pytest

from hatchway.agent.users import SessionUserError, ensure_session_user, grant_sudo, session_user_for


def test_sudo_rights_are_granted_once_in_a_read_only_file(tmp_path):
    sudoers = tmp_path / "sudoers.d" / "hatchway-users"
    sudoers.parent.mkdir()
    grant_sudo("alice", sudoers)
    grant_sudo("alice", sudoers)
    grant_sudo("bob", sudoers)
    lines = [line for line in sudoers.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["alice ALL=(ALL) NOPASSWD:ALL", "bob ALL=(ALL) NOPASSWD:ALL"]
    assert stat.S_IMODE(sudoers.stat().st_mode) == 0o440


def test_no_sudo_folder_means_no_sudo_rights(tmp_path):
    grant_sudo("alice", tmp_path / "missing" / "hatchway-users")
    assert not (tmp_path / "missing").exists()


def test_bad_names_are_refused_before_any_command():
    with pytest.raises(SessionUserError, match="not a valid user name"):
        ensure_session_user("bad name; rm -rf /")


def test_only_a_root_agent_switches_users():
    expected = "hatchway-user" if os.geteuid() == 0 else None
    assert session_user_for("hatchway-user") == expected
    assert session_user_for("") is None
    assert session_user_for(None) is None


def test_the_session_user_setting():
    from hatchway.cli import configured_session_user

    assert configured_session_user(None, {}) == "hatchway-user"
    assert configured_session_user(None, {"HATCHWAY_SESSION_USER": ""}) is None
    assert configured_session_user(None, {"HATCHWAY_SESSION_USER": "ops"}) == "ops"
    assert configured_session_user("", {"HATCHWAY_SESSION_USER": "ops"}) is None
    assert configured_session_user("dev", {}) == "dev"
