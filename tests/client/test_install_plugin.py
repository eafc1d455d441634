"""``install-plugin`` writes a session-manager-plugin that runs Hatchway's client."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hatchway.client.commands import PLUGIN_VERSION, install_plugin, plugin_script


def install(directory, env=None):
    return CliRunner().invoke(install_plugin, ["--dir", str(directory)], env=env)


def test_writes_an_executable_script_that_execs_this_python(tmp_path):
    target = tmp_path / "bin"
    result = install(target, env={"PATH": "/usr/bin"})
    assert result.exit_code == 0, result.output
    script = target / "session-manager-plugin"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f'exec {sys.executable} -m hatchway session-manager-plugin "$@"\n' in text
    assert f"Wrote {script}" in result.stdout
    assert "export PATH=" in result.stdout


def test_says_so_when_the_directory_is_already_on_path(tmp_path):
    result = install(tmp_path, env={"PATH": f"/usr/bin{os.pathsep}{tmp_path}"})
    assert result.exit_code == 0
    assert "is on PATH" in result.stdout


def test_replaces_its_own_script_but_not_a_foreign_one(tmp_path):
    assert install(tmp_path).exit_code == 0
    assert install(tmp_path).exit_code == 0
    foreign = tmp_path / "session-manager-plugin"
    foreign.write_bytes(b"\x7fELF binary from AWS")
    result = install(tmp_path)
    assert result.exit_code == 252
    assert "not written by hatchway" in result.stderr
    assert foreign.read_bytes() == b"\x7fELF binary from AWS"


def test_quotes_an_interpreter_path_with_spaces():
    assert "exec '/opt/my python/bin/python' -m hatchway" in plugin_script(
        "/opt/my python/bin/python"
    )


def test_installed_plugin_runs(tmp_path):
    from hatchway import cli

    if "session-manager-plugin" not in getattr(cli.main, "commands", {}):
        pytest.skip("session-manager-plugin is not registered in hatchway/cli.py yet")
    assert install(tmp_path).exit_code == 0
    result = subprocess.run(
        [str(tmp_path / "session-manager-plugin"), "--version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"{PLUGIN_VERSION}\n".encode())
