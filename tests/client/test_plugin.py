"""The ``session-manager-plugin`` argv contract (data-channel.md §1.2, §7)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hatchway.client.commands import (
    INSTALLED_BANNER,
    PLUGIN_VERSION,
    read_start_response,
    session_manager_plugin,
)
from hatchway.client.errors import InvalidArguments

from .fakes import PLUGIN, TARGET, Scenario, client_command, client_env, fake_service

TIMEOUT = 60
RESPONSE = {"SessionId": "s-1", "TokenValue": "tok", "StreamUrl": "ws://127.0.0.1:9/x"}


def invoke(*args, env=None):
    return CliRunner().invoke(session_manager_plugin, list(args), env=env)


def test_no_arguments_print_the_installed_banner():
    result = invoke()
    assert (result.exit_code, result.stdout) == (0, INSTALLED_BANNER)
    assert INSTALLED_BANNER == (
        "\nThe Session Manager plugin was installed successfully. "
        "Use the AWS CLI to start a session.\n\n"
    )


def test_version_is_new_enough_for_the_environment_hand_off():
    result = invoke("--version")
    assert (result.exit_code, result.stdout) == (0, f"{PLUGIN_VERSION}\n")
    parts = [int(p) for p in PLUGIN_VERSION.split(".")]
    assert parts > [1, 2, 497, 0]


@pytest.mark.parametrize("args", [["foo"], ["foo", "us-east-1"], ["--help"]])
def test_two_or_three_arguments_are_an_unknown_operation(args):
    result = invoke(*args)
    assert result.exit_code == 252
    assert result.stdout == (
        f"\nUnknown operation {args[0]}. \n"
        "Use session-manager-plugin --version to check the version.\n\n"
    )


def test_operation_other_than_start_session_is_invalid():
    result = invoke(json.dumps(RESPONSE), "us-east-1", "ResumeSession", "", "{}", "")
    assert (result.exit_code, result.stdout) == (252, "Invalid Operation")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{not json", "us-east-1", "StartSession"], "Cannot perform start session: Expecting"),
        (["[1]", "us-east-1", "StartSession"], "not a JSON object"),
        (['{"SessionId":"s"}', "us-east-1", "StartSession"], "has no TokenValue"),
        ([json.dumps(RESPONSE), "r", "StartSession", "", "{}"], "no string Target"),
        ([json.dumps(RESPONSE), "r", "StartSession", "", '{"Target": 5}'], "Target"),
        ([json.dumps(RESPONSE), "r", "StartSession", "", "{x"], "parameters"),
        (["AWS_SSM_START_SESSION_RESPONSE_X", "r", "StartSession"], "is not set"),
    ],
)
def test_malformed_argv_is_a_clear_error_with_exit_252(args, message):
    env = {"AWS_SSM_START_SESSION_RESPONSE_X": None}
    result = invoke(*args, env=env)
    assert result.exit_code == 252, result.output
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "tok" not in result.stderr  # the token never reaches an error message


def test_environment_indirection_reads_then_unsets_the_variable():
    environ = {"AWS_SSM_START_SESSION_RESPONSE": json.dumps(RESPONSE), "OTHER": "1"}
    started = read_start_response("AWS_SSM_START_SESSION_RESPONSE", environ)
    assert (started.session_id, started.token, started.stream_url) == (
        "s-1",
        "tok",
        "ws://127.0.0.1:9/x",
    )
    assert environ == {"OTHER": "1"}
    with pytest.raises(InvalidArguments):
        read_start_response("AWS_SSM_START_SESSION_RESPONSE", environ)


def run_plugin(args, env, stdin=b""):
    return subprocess.run(
        client_command(PLUGIN, *args),
        input=stdin,
        capture_output=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def test_plugin_runs_a_session_handed_over_through_the_environment():
    with fake_service() as service:
        response = service.create_session()
        env = client_env(service, AWS_SSM_START_SESSION_RESPONSE=json.dumps(response))
        del env["AWS_ENDPOINT_URL"]  # argv[6] is what ResumeSession would use
        args = [
            "AWS_SSM_START_SESSION_RESPONSE",
            "us-east-1",
            "StartSession",
            "",
            json.dumps({"Target": TARGET}),
            service.url,
        ]
        result = run_plugin(args, env, stdin=b"echo via plugin\nexit 5\n")
    assert result.returncode == 5, result.stderr
    assert result.stdout == b"via plugin\n"
    assert "Starting session with SessionId: sess-1" in result.stderr.decode()
    assert service.opens[0]["TokenValue"] == response["TokenValue"]


def test_plugin_resumes_at_the_argv_endpoint():
    scenario = Scenario(drop_after_lines=3)
    with fake_service(scenario) as service:
        response = service.create_session()
        env = client_env(None, AWS_ENDPOINT_URL="http://127.0.0.1:1")  # must not be used
        args = [json.dumps(response), "us-east-1", "StartSession", "", "{}", service.url]
        args[4] = json.dumps({"Target": TARGET, "DocumentName": "SSM-SessionManagerRunShell"})
        result = run_plugin(args, env, stdin=b"seq 6\nexit 0\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"1\n2\n3\n4\n5\n6\n"
    assert service.operations() == ["AmazonSSM.ResumeSession"]


def test_legacy_four_argument_call_refuses_kms_like_the_reference():
    with fake_service(Scenario(kms_key_id="alias/k")) as service:
        response = service.create_session()
        result = run_plugin([json.dumps(response), "us-east-1", "StartSession"], client_env())
        session = service.only_session()
    assert result.returncode == 0, result.stderr
    kms = session.responses[0].action("KMSEncryption")
    assert kms is not None and kms.status == 2
    assert "Please upgrade to the latest version of your CLI" in kms.error
    assert "KMSEncryption failed on client with status 2" in result.stderr.decode()
    assert service.operations() == []  # no KMS call was made


def test_plugin_refuses_port_documents_and_terminates_the_session():
    with fake_service() as service:
        response = service.create_session()
        params = json.dumps({"Target": TARGET, "DocumentName": "AWS-StartSSHSession"})
        args = [json.dumps(response), "us-east-1", "StartSession", "", params, service.url]
        result = run_plugin(args, client_env())
    assert result.returncode == 252
    assert "port forwarding" in result.stderr.decode()
    assert service.operations() == ["AmazonSSM.TerminateSession"]


def test_the_aws_cli_drives_our_plugin(tmp_path):
    """awscli calls StartSession, checks --version, and hands the response over in
    AWS_SSM_START_SESSION_RESPONSE to whatever session-manager-plugin is on PATH."""
    aws = shutil.which("aws", path=os.path.dirname(sys.executable))
    if aws is None:
        pytest.fail("awscli is not installed in the test virtualenv")
    plugin = tmp_path / "session-manager-plugin"
    plugin.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{PLUGIN}" "$@"\n')
    plugin.chmod(0o755)
    with fake_service() as service:
        env = client_env(service, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        result = subprocess.run(
            [aws, "ssm", "start-session", "--target", TARGET, "--endpoint-url", service.url],
            input=b"echo from awscli\nexit 0\n",
            capture_output=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"from awscli\n"
    stderr = result.stderr.decode()
    assert "outdated" not in stderr.lower()
    assert "Exiting session with sessionId: sess-1." in stderr
    assert service.operations() == ["AmazonSSM.StartSession"]
