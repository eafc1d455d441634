"""RunAs against real OS users: CI runs as root, so these tests create and remove them."""

import os
import subprocess
import uuid

import pytest

from tests.e2e.shells import run_shell, shell_document

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="RunAs needs a root agent")


def run_as_document(server, user):
    return shell_document(server, {"runAsEnabled": True, "runAsDefaultUser": user})


@pytest.fixture
def os_user():
    name = f"hw{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    yield name
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


@needs_root
def test_the_shell_runs_as_the_run_as_user(stack, client_env, os_user):
    server, agent = stack
    document = run_as_document(server, os_user)
    result = run_shell(client_env, agent.instance_id, document, 'echo "$(id -un):$HOME"\nexit\n')
    assert f"{os_user}:/home/{os_user}" in result.stdout, result.stderr


@needs_root
def test_the_tag_names_the_user_before_the_default(stack, client_env, os_user):
    server, agent = stack
    server.tag_admin({"SSMSessionRunAs": os_user})
    document = run_as_document(server, "nobody-by-default")
    result = run_shell(client_env, agent.instance_id, document, "id -un\nexit\n")
    assert os_user in result.stdout, result.stderr


@needs_root
def test_a_run_as_user_that_does_not_exist(stack, client_env):
    server, agent = stack
    document = run_as_document(server, "hw-no-such-user")
    result = run_shell(client_env, agent.instance_id, document, "exit\n")
    output = result.stdout + result.stderr
    assert (
        "Unable to start shell: failed to start pty since RunAs user hw-no-such-user "
        "does not exist" in output
    ), output
    assert result.returncode == 255
    (session,) = server.client().describe_sessions(State="History")["Sessions"]
    assert session["Status"] == "Failed"


def test_run_as_with_no_user_is_refused_by_the_service(stack, client_env):
    server, agent = stack
    document = run_as_document(server, "")
    result = run_shell(client_env, agent.instance_id, document, "exit\n")
    assert "Invalid RunAs username" in result.stderr
    assert result.returncode == 254
    (session,) = server.client().describe_sessions(State="History")["Sessions"]
    assert session["Status"] == "Failed"


@needs_root
def test_without_run_as_sessions_run_as_a_session_user_made_on_first_use(stack, client_env):
    _, agent = stack
    name = f"hw{uuid.uuid4().hex[:8]}"
    agent.stop()
    agent.start(session_user=name)
    try:
        result = run_shell(client_env, agent.instance_id, None, 'echo "$(id -un):$HOME"\nexit\n')
        assert f"{name}:/home/{name}" in result.stdout, result.stderr
        again = run_shell(client_env, agent.instance_id, None, "id -un\nexit\n")  # reused
        assert name in again.stdout, again.stderr
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
