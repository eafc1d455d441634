"""Sessions encrypted with a key from Hatchway's built-in KMS, end to end, and the ways
KMS can fail: each failure reaches the user in the words the official agent uses."""

import contextlib
import json
import socket
import subprocess
import threading

import pytest

from hatchway.server.relay import Relay
from tests.e2e.shells import run_shell, shell_document


def encrypted_document(server, key_id):
    return shell_document(server, {"kmsKeyId": key_id})


@pytest.fixture
def relay_frames(stack):
    """Every frame the relay forwards, in both directions."""
    server, _ = stack
    relay = server.app_state().services.get(Relay)
    frames = []
    forward = relay._forward

    async def recording(pairing, role, frame):
        frames.append(frame)
        await forward(pairing, role, frame)

    relay._forward = recording
    yield frames
    relay._forward = forward


def test_an_encrypted_shell_session_shows_the_relay_only_ciphertext(
    stack, client_env, relay_frames
):
    server, agent = stack
    key_id = server.client("kms").create_key(Description="sessions")["KeyMetadata"]["KeyId"]
    document = encrypted_document(server, key_id)
    result = run_shell(
        client_env, agent.instance_id, document, "echo secret-$((6*7))-marker\nexit 3\n"
    )
    assert "secret-42-marker" in result.stdout, result.stderr
    assert result.returncode == 3
    assert "This session is encrypted using AWS KMS." in result.stderr
    assert relay_frames, "nothing went through the relay"
    seen = b"".join(relay_frames)
    assert b"secret-42-marker" not in seen  # the output
    assert b"secret-$((6*7))" not in seen  # the input


def test_session_preferences_that_name_a_key_encrypt_every_default_session(stack, client_env):
    """The preferences document, updated as with AWS, applies to sessions that name no
    document."""
    server, agent = stack
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    preferences = {
        "schemaVersion": "1.0",
        "description": "Session Manager preferences",
        "sessionType": "Standard_Stream",
        "inputs": {"kmsKeyId": key_id},
    }
    server.client().update_document(
        Name="SSM-SessionManagerRunShell",
        Content=json.dumps(preferences),
        DocumentVersion="$LATEST",
    )
    server.client().update_document_default_version(
        Name="SSM-SessionManagerRunShell", DocumentVersion="2"
    )
    result = run_shell(client_env, agent.instance_id, None, "echo prefs-$((6*7))\nexit\n")
    assert "prefs-42" in result.stdout, result.stderr
    assert "This session is encrypted using AWS KMS." in result.stderr


def assert_failed(server, result):
    """The session ended with an error: the client exits non-zero and the service records
    the session as Failed."""
    assert result.returncode != 0
    (session,) = server.client().describe_sessions(State="History")["Sessions"]
    assert session["Status"] == "Failed"


def test_a_key_that_does_not_exist(stack, client_env):
    server, agent = stack
    document = encrypted_document(server, "alias/no-such-key")
    result = run_shell(client_env, agent.instance_id, document, "exit\n")
    output = result.stdout + result.stderr
    assert "NotFoundException: Invalid keyId alias/no-such-key" in output, output
    assert_failed(server, result)


def put_role_policy(server, role, name, document):
    from hatchway.server.storage.models import Policy

    async def put():
        async with server.app_state().db() as db, db.begin():
            db.add(
                Policy(
                    principal_kind="role", principal_name=role, policy_name=name, document=document
                )
            )

    server.loop_call(put())


def test_kms_decrypt_denied_to_the_node_names_the_key(stack, client_env):
    server, agent = stack
    key = server.client("kms").create_key()["KeyMetadata"]
    put_role_policy(
        server,
        "e2e",  # the IamRole of the stack's activation
        "no-decrypt",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}],
        },
    )
    document = encrypted_document(server, key["KeyId"])
    result = run_shell(client_env, agent.instance_id, document, "exit\n")
    output = result.stdout + result.stderr
    assert (
        "Fetching data key failed: Unable to retrieve data key, Error when decrypting "
        "data key AccessDeniedException" in output
    ), output
    assert key["Arn"] in output
    assert_failed(server, result)


def test_a_node_whose_role_gives_no_kms_decrypt(stack, client_env):
    """Nodes have no built-in KMS rights: without the role policy the stack gives, the
    user sees the failure AWS's support article describes."""
    from sqlalchemy import delete

    from hatchway.server.storage.models import Policy

    server, agent = stack

    async def remove_role_policies():
        async with server.app_state().db() as db, db.begin():
            await db.execute(delete(Policy).where(Policy.principal_name == "e2e"))

    server.loop_call(remove_role_policies())
    key = server.client("kms").create_key()["KeyMetadata"]
    result = run_shell(
        client_env, agent.instance_id, encrypted_document(server, key["KeyId"]), "exit\n"
    )
    output = result.stdout + result.stderr
    account = server.app_state().account
    assert (
        "Encountered error while initiating handshake. Fetching data key failed: Unable to "
        "retrieve data key, Error when decrypting data key AccessDeniedException: User: "
        f"arn:aws:sts::{account}:assumed-role/e2e/{agent.instance_id} is not authorized to "
        f"perform: kms:Decrypt on resource: {key['Arn']}"
    ) in output, output
    assert "explicit deny" not in output
    assert_failed(server, result)


def test_an_agent_whose_kms_refuses_connections(stack, client_env):
    server, agent = stack
    agent.stop()
    agent.start(kms_url="http://127.0.0.1:9")  # the discard port: nothing listens there
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    document = encrypted_document(server, key_id)
    result = run_shell(client_env, agent.instance_id, document, "exit\n")
    output = result.stdout + result.stderr
    assert "Encountered error while initiating handshake. Fetching data key failed" in output
    assert "KMS at http://127.0.0.1:9 is unreachable" in output, output
    assert_failed(server, result)


@contextlib.contextmanager
def silent_endpoint():
    """A TCP endpoint that takes connections and never answers: a KMS the node cannot
    really reach (a firewall that drops, a VPC without the endpoint)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []
    stop = threading.Event()

    def hold():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def test_an_agent_that_cannot_reach_kms_times_out_the_handshake(stack, client_env):
    server, agent = stack
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    document = encrypted_document(server, key_id)
    with silent_endpoint() as kms_url:
        agent.stop()
        agent.start(kms_url=kms_url)
        result = run_shell(client_env, agent.instance_id, document, "exit\n")
    output = result.stdout + result.stderr
    assert (
        "Encountered error while initiating handshake. Handshake timed out. Please ensure "
        "that you have the latest version of the session manager plugin." in output
    ), output
    assert f"KMS at {kms_url} did not answer within" in output
    assert_failed(server, result)


def encrypted_port_document(server, name="Encrypted-Port"):
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    document = {
        "schemaVersion": "1.0",
        "description": "port forwarding, encrypted",
        "sessionType": "Port",
        "inputs": {"kmsKeyId": key_id},
        "parameters": {"portNumber": {"type": "String"}, "localPortNumber": {"type": "String"}},
        "properties": {
            "portNumber": "{{ portNumber }}",
            "localPortNumber": "{{ localPortNumber }}",
            "type": "LocalPortForwarding",
        },
    }
    server.client().create_document(Name=name, Content=json.dumps(document), DocumentType="Session")
    return name


def test_an_encrypted_port_session(stack, client_env, relay_frames):
    from tests.e2e.ports import HttpOrigin, forwarding

    server, agent = stack
    body = b"plain-marker-" * 50_000
    with (
        HttpOrigin(body) as origin,
        forwarding(
            client_env,
            agent.instance_id,
            f"portNumber={origin.port},localPortNumber=0",
            document=encrypted_port_document(server),
        ) as tunnel,
    ):
        assert HttpOrigin.fetch_through(tunnel.port) == body
    assert "This session is encrypted using AWS KMS." in tunnel.output
    assert b"plain-marker-" not in b"".join(relay_frames)


def test_256_mib_each_way_through_an_encrypted_port_session(stack, client_env):
    """Sealing makes every message 28 bytes longer; the send buffers must allow for it
    (issue 13: the session died with FlowControlError after about 8 MiB in flight)."""
    from tests.e2e.ports import EchoServer, forwarding, hashed_echo_round_trip

    server, agent = stack
    with (
        EchoServer() as echo,
        forwarding(
            client_env,
            agent.instance_id,
            f"portNumber={echo.port},localPortNumber=0",
            document=encrypted_port_document(server),
        ) as tunnel,
    ):
        sent, received, count = hashed_echo_round_trip(tunnel.port, 256)
        assert count == 256 << 20, tunnel.output
        assert received == sent
        assert tunnel.process.poll() is None, tunnel.output
    assert "This session is encrypted using AWS KMS." in tunnel.output
    assert "FlowControlError" not in tunnel.output


def test_a_client_without_kms_is_refused_in_the_agents_words(stack, client_env, pyssm):
    """pyssm-client answers KMSEncryption as unsupported; the agent ends the session with
    the official agent's message, which the client prints."""
    server, agent = stack
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    document = encrypted_document(server, key_id)
    result = subprocess.run(
        [
            *(pyssm, "ssh", "--target", agent.instance_id, "--document-name", document),
            *("--endpoint-url", server.url, "--region", server.region),
        ],
        input=b"exit\n",
        env=client_env,
        capture_output=True,
        timeout=90,
    )
    # pyssm-client prints the channel_closed message as it came, header bytes and all.
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert (
        "Encountered error while initiating handshake. KMSEncryption failed on client with "
        "status 3 error: KMSEncryption not supported in Python client" in output
    ), output
    (session,) = server.client().describe_sessions(State="History")["Sessions"]
    assert session["Status"] == "Failed"


def test_a_cli_too_old_for_kms_is_refused_with_the_plugins_words(stack, plugin_env):
    """The AWS CLI's oldest plugin call (4 arguments, no StartSession request) cannot do
    KMS: the plugin refuses the handshake with the reference plugin's upgrade message."""
    server, agent = stack
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    document = encrypted_document(server, key_id)
    started = server.client().start_session(Target=agent.instance_id, DocumentName=document)
    response = json.dumps({k: started[k] for k in ("SessionId", "TokenValue", "StreamUrl")})
    result = subprocess.run(
        ["session-manager-plugin", response, server.region, "StartSession"],
        env=plugin_env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    output = result.stdout + result.stderr
    assert "Installed version of CLI does not support Session Manager encryption feature" in (
        output
    ), output
