"""``start-session`` run as a real process against the fake control plane and peer."""

import base64
import os
import signal
import ssl
import subprocess
import uuid

import pytest

from hatchway.protocol.client_session import CLIENT_VERSION
from tests.certs import PrivateCA
from tests.helpers import wait_until

from .fakes import (
    KMS_MESSAGE,
    START,
    TARGET,
    Scenario,
    client_command,
    client_env,
    fake_service,
)

TIMEOUT = 60


def run(service, *args, stdin=b"", env=None, target=TARGET):
    command = client_command(START, "--target", target, *args)
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        env=env if env is not None else client_env(service),
        timeout=TIMEOUT,
        check=False,
    )


def test_piped_commands_print_output_and_exit_with_the_remote_status():
    with fake_service() as service:
        result = run(service, stdin=b"echo hi\nexit 4\n")
    assert result.returncode == 4, result.stderr
    assert result.stdout == b"hi\n"  # nothing of ours in piped output
    stderr = result.stderr.decode()
    assert "\nStarting session with SessionId: sess-1\n" in stderr
    assert stderr.endswith("\n\nExiting session with sessionId: sess-1.\n\n")
    assert service.calls == [("AmazonSSM.StartSession", {"Target": TARGET})]

    (opening,) = service.opens
    assert list(opening) == [
        "MessageSchemaVersion",
        "RequestId",
        "TokenValue",
        "ClientId",
        "ClientVersion",
    ]
    assert opening["MessageSchemaVersion"] == "1.0"
    assert opening["TokenValue"] == "token-sess-1-0"
    assert opening["ClientVersion"] == CLIENT_VERSION
    assert uuid.UUID(opening["ClientId"]).version == 4
    assert uuid.UUID(opening["RequestId"]).version == 4

    session = service.only_session()
    (response,) = session.responses
    assert response.client_version == CLIENT_VERSION
    # Everything piped arrived once, then Ctrl-D at the end of stdin.
    assert bytes(session.inputs) in (b"echo hi\nexit 4\n", b"echo hi\nexit 4\n\x04")


def test_agent_without_a_handshake_is_a_shell_and_gets_the_size_at_once():
    scenario = Scenario(handshake=False, prompt=b"$ ")
    with fake_service(scenario) as service:
        env = client_env(service, COLUMNS="132", LINES="43")
        result = run(service, stdin=b"echo hi\nexit 0\n", env=env)
        session = service.only_session()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"$ hi\n"
    assert session.responses == []
    assert session.sizes[0] == (132, 43)  # no terminal anywhere: COLUMNS x LINES


def test_stdin_end_sends_ctrl_d_and_the_session_ends_normally():
    with fake_service() as service:
        result = run(service, stdin=b"echo a\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"a\n"
    assert bytes(service.only_session().inputs) == b"echo a\n\x04"


def test_request_fields_reach_start_session():
    with fake_service() as service:
        result = run(
            service,
            "--document-name",
            "SSM-SessionManagerRunShell",
            "--parameters",
            "shell=bash,shell=-l, mode = fast",
            "--reason",
            "debugging",
            stdin=b"exit 0\n",
        )
    assert result.returncode == 0, result.stderr
    assert service.calls[0] == (
        "AmazonSSM.StartSession",
        {
            "Target": TARGET,
            "DocumentName": "SSM-SessionManagerRunShell",
            "Parameters": {"shell": ["bash", "-l"], "mode": ["fast"]},
            "Reason": "debugging",
        },
    )


def test_json_parameters():
    with fake_service() as service:
        result = run(service, "--parameters", '{"a":["1","2"],"b":"3"}', stdin=b"exit 0\n")
    assert result.returncode == 0, result.stderr
    assert service.calls[0][1]["Parameters"] == {"a": ["1", "2"], "b": ["3"]}


@pytest.mark.parametrize("explicit_endpoint", [False, True])
def test_kms_session_encrypts_and_prints_the_customer_message(explicit_endpoint):
    with fake_service(Scenario(kms_key_id="alias/session-key")) as service:
        args = ["--endpoint-url", service.url] if explicit_endpoint else []
        env = client_env(None if explicit_endpoint else service)
        result = run(service, *args, stdin=b"echo secret\nstderr warned\nexit 0\n", env=env)
        session = service.only_session()
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"secret\n"
    stderr = result.stderr.decode()
    assert f"{KMS_MESSAGE}\n" in stderr
    assert "warned\n" in stderr  # remote StdErr goes to our stderr
    operations = service.operations()
    assert operations == ["AmazonSSM.StartSession", "TrentService.GenerateDataKey"]
    key_request = service.calls[1][1]
    # The fake agent offers a random challenge; the data key is bound to it.
    assert key_request == {
        "KeyId": "alias/session-key",
        "NumberOfBytes": 64,
        "EncryptionContext": {
            "aws:ssm:SessionId": "sess-1",
            "aws:ssm:TargetId": TARGET,
            "aws:ssm:RandomChallenge": base64.b64encode(session.challenge).decode(),
        },
    }
    assert session.channel.cipher is not None
    assert session.responses[0].kms_ciphertext_key in session.kms_keys
    assert session.responses[0].challenge_acknowledged


def test_channel_closed_with_output_is_shown_like_the_plugin():
    with fake_service() as service:
        result = run(service, stdin=b"close-with idle timeout reached\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().endswith("\n\nSessionId: sess-1 : idle timeout reached\n\n")


@pytest.mark.parametrize("close_frame", [False, True], ids=["tcp-reset", "close-frame"])
def test_dropped_socket_resumes_with_nothing_lost_or_duplicated(close_frame):
    scenario = Scenario(
        drop_after_lines=150, withhold_acks_until_drop=True, drop_with_close_frame=close_frame
    )
    with fake_service(scenario) as service:
        result = run(service, stdin=b"seq 300\necho done\nexit 3\n")
        session = service.only_session()
    assert result.returncode == 3, result.stderr
    expected = "".join(f"{n}\n" for n in range(1, 301)) + "done\n"
    assert result.stdout.decode() == expected
    assert "Trying to open session (Retrying. Attempt #1)\n" in result.stderr.decode()
    assert service.operations() == ["AmazonSSM.StartSession", "AmazonSSM.ResumeSession"]

    first, second = service.opens
    assert second["ClientId"] == first["ClientId"]
    assert second["RequestId"] != first["RequestId"]
    assert (first["TokenValue"], second["TokenValue"]) == ("token-sess-1-0", "token-sess-1-1")
    # Our input was never acked before the drop and was resent after it: the agent
    # still ran it once.
    assert bytes(session.inputs).startswith(b"seq 300\necho done\nexit 3\n")
    assert bytes(session.inputs).count(b"seq 300") == 1
    assert session.connections == 2


def test_resume_without_a_token_reports_the_timeout():
    scenario = Scenario(drop_after_lines=2, resume_gives_token=False)
    with fake_service(scenario) as service:
        result = run(service, stdin=b"seq 5\n")
    assert result.returncode == 255
    assert "Session: sess-1 timed out.\n" in result.stderr.decode()
    assert result.stdout.startswith(b"1\n")


def test_service_error_exits_254():
    scenario = Scenario(start_error=("InvalidInstanceId", "no such node"))
    with fake_service(scenario) as service:
        result = run(service)
    assert result.returncode == 254
    assert "InvalidInstanceId" in result.stderr.decode()
    assert "no such node" in result.stderr.decode()
    assert b"Traceback" not in result.stderr


def test_missing_credentials_exit_253():
    with fake_service() as service:
        env = client_env(service)
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        result = run(service, env=env)
    assert result.returncode == 253
    assert "Unable to locate credentials" in result.stderr.decode()
    assert service.calls == []


def test_missing_region_exits_253():
    env = client_env()
    del env["AWS_DEFAULT_REGION"]
    result = run(None, env=env)
    assert result.returncode == 253
    assert "region" in result.stderr.decode().lower()


def test_unreachable_endpoint_exits_255():
    result = run(None, "--endpoint-url", "http://127.0.0.1:1")
    assert result.returncode == 255
    assert "StartSession failed" in result.stderr.decode()


def test_explicit_endpoint_url_wins_over_the_environment():
    with fake_service() as service:
        env = client_env(None, AWS_ENDPOINT_URL="http://127.0.0.1:1")
        result = run(service, "--endpoint-url", service.url, stdin=b"exit 0\n", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--parameters", "novalue"],
        ["--parameters", "{not json"],
        ["--parameters", '{"a": 1}'],
        ["--no-such-option"],
    ],
)
def test_invalid_arguments_exit_252(args):
    result = run(None, *args)
    assert result.returncode == 252, result.stderr
    assert b"Traceback" not in result.stderr


def test_missing_target_exits_252():
    command = client_command(START)
    result = subprocess.run(command, capture_output=True, timeout=TIMEOUT, env=client_env())
    assert result.returncode == 252
    assert b"--target" in result.stderr


def test_local_host_without_port_forwarding_is_refused_before_starting():
    with fake_service() as service:
        result = run(service, "--local-host", "0.0.0.0")
    assert result.returncode == 252
    assert "--local-host is for port forwarding" in result.stderr.decode()
    assert service.calls == []


def test_port_session_type_from_the_handshake_is_refused_and_terminated():
    with fake_service(Scenario(session_type="Port")) as service:
        result = run(service, "--document-name", "Custom-Port-Document")
        session = service.only_session()
    assert result.returncode == 252, result.stderr
    assert "starts a Port session, not a shell" in result.stderr.decode()
    assert "portNumber" in result.stderr.decode()
    assert service.operations() == ["AmazonSSM.StartSession", "AmazonSSM.TerminateSession"]
    (response,) = session.responses  # the agent learnt why, too
    assert response.actions[0].status == 2


def test_debug_logs_each_step_without_secrets():
    with fake_service() as service:
        result = run(service, "--debug", stdin=b"exit 0\n")
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    for step in (
        "credentials: source=env",
        "ssm: region=us-east-1 endpoint=http://127.0.0.1:",
        "StartSession: request_id=",
        "handshake: response sent",
        "websocket: connecting to ws://127.0.0.1:",
        "websocket: upgrade status 101",
        "OpenDataChannel sent:",
        "handshake: request from agent 3.3.987.0",
        "session started",
        "SigV4 canonical request:\nPOST\n/\n",
        "x-amz-target:AmazonSSM.StartSession",
        "SigV4 string to sign:\nAWS4-HMAC-SHA256\n",
        "HTTP: POST http://127.0.0.1:",
        "StartSession: HTTP 200",
        '"TokenValue": "<',  # the response body, with the token masked
    ):
        assert step in stderr, step
    assert "Signature=" not in stderr
    assert "StartSession: request_id= " not in stderr  # botocore's id is shown
    assert "token-sess-1-0" not in stderr
    assert "secret-example-key" not in stderr
    assert "AKIDEXAMPLE00000000" not in stderr


def test_wss_through_an_https_proxy_trusting_aws_ca_bundle(tmp_path):
    ca = PrivateCA(tmp_path)
    leaf = ca.issue(["ssmmessages.hatchway.test", "127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    with fake_service(ssl_context=context, stream_host="ssmmessages.hatchway.test") as service:
        proxy = service.start_proxy().replace("http://", "http://user:pw@")
        env = client_env(
            service,
            HTTPS_PROXY=proxy,
            NO_PROXY="127.0.0.1",  # the control plane is reached directly
            AWS_CA_BUNDLE=str(ca.path),
        )
        result = run(service, stdin=b"echo over tls\nexit 0\n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"over tls\n"
    (target, headers), *_ = service.proxied
    assert target == f"ssmmessages.hatchway.test:{service.port}"
    assert headers["Proxy-Authorization"] == "Basic dXNlcjpwdw=="
    assert len(service.proxied) == 1  # the control plane went direct (NO_PROXY)


def started_client(service, stdout=subprocess.PIPE):
    """A client whose stdin stays open, once its session has started at the peer."""
    process = subprocess.Popen(
        client_command(START, "--target", TARGET),
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=client_env(service),
    )
    wait_until(
        lambda: service.sessions and service.only_session().handshake_done,
        what="the session to start",
    )
    return process


def test_sigterm_terminates_the_session_and_exits_130():
    with fake_service() as service:
        process = started_client(service)
        try:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            process.kill()
        operations = service.operations()
    assert process.returncode == 130
    assert "Interrupted by SIGTERM; session sess-1 terminated." in stderr.decode()
    assert operations == ["AmazonSSM.StartSession", "AmazonSSM.TerminateSession"]


def test_closed_stdout_ends_the_session_quietly():
    with fake_service() as service:
        read_end, write_end = os.pipe()
        process = started_client(service, stdout=write_end)
        os.close(write_end)
        os.close(read_end)  # nobody reads our output any more, as after `| head -1`
        try:
            _, stderr = process.communicate(b"echo hi\n", timeout=TIMEOUT)
        finally:
            process.kill()
        operations = service.operations()
    assert process.returncode == 130
    assert b"Traceback" not in stderr
    assert operations == ["AmazonSSM.StartSession", "AmazonSSM.TerminateSession"]


def test_unknown_profile_exits_253():
    result = run(None, "--profile", "no-such-profile")
    assert result.returncode == 253
    assert "no-such-profile" in result.stderr.decode()


def test_resume_refused_by_the_service_exits_254_without_retrying():
    scenario = Scenario(drop_after_lines=1, resume_error=("DoesNotExistException", "gone"))
    with fake_service(scenario) as service:
        result = run(service, stdin=b"seq 3\n")
    assert result.returncode == 254
    stderr = result.stderr.decode()
    assert "Error: Failed to open session. An error occurred (DoesNotExistException)" in stderr
    assert "Attempt #2" not in stderr
    assert service.operations() == ["AmazonSSM.StartSession", "AmazonSSM.ResumeSession"]
