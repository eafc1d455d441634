"""The client's I/O pieces in-process: proxies, back-off, TCP_NODELAY, the retry budget,
argument parsing and the terminal fallbacks."""

import asyncio
import io
import logging
import os
import socket
import ssl

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from hatchway.aws.proxy import proxy_for
from hatchway.client.commands import parse_parameters
from hatchway.client.config import AwsSettings, StartedSession, kms_endpoint_for
from hatchway.client.connection import (
    DataChannelDialer,
    RetryPolicy,
    ensure_nodelay,
)
from hatchway.client.controlplane import ControlPlane
from hatchway.client.errors import InvalidArguments, TransportFailure
from hatchway.client.runner import SessionOptions, closing_line
from hatchway.client.shell import ShellRunner, exit_status_for
from hatchway.client.terminal import Terminal
from tests.certs import PrivateCA

from .fakes import TARGET, Scenario, fake_service

LOG = logging.getLogger("hatchway.client.test")


# --- proxies ----------------------------------------------------------------------------


P = "http://p:1"
SSM = "wss://ssm.example.com/x"


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        (SSM, {"HTTPS_PROXY": P}, P),
        (SSM, {"https_proxy": "p:1"}, P),
        ("ws://ssm.example.com/x", {"HTTP_PROXY": P, "HTTPS_PROXY": "http://q:2"}, P),
        (SSM, {"WSS_PROXY": P, "HTTPS_PROXY": "http://q:2"}, P),
        (SSM, {"HTTP_PROXY": P}, None),
        ("wss://127.0.0.1:8080/x", {"HTTPS_PROXY": P}, None),
        ("wss://localhost/x", {"HTTPS_PROXY": P}, None),
        ("wss://[::1]/x", {"HTTPS_PROXY": P}, None),
        (SSM, {"HTTPS_PROXY": P, "NO_PROXY": "example.com"}, None),
        (SSM, {"HTTPS_PROXY": P, "NO_PROXY": ".example.com:443"}, None),
        (SSM, {"HTTPS_PROXY": P, "NO_PROXY": "other.net, *"}, None),
        ("wss://10.1.2.3/x", {"HTTPS_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, None),
        ("wss://ssm.example.org/x", {"HTTPS_PROXY": P, "NO_PROXY": "example.com"}, P),
    ],
)
def test_proxy_resolution_follows_go(url, environ, expected):
    proxy, _ = proxy_for(URL(url), environ)
    assert (str(proxy) if proxy else None) == expected


def test_proxy_credentials_become_a_proxy_authorization_header():
    proxy, headers = proxy_for(URL("wss://h/x"), {"HTTPS_PROXY": "http://user:pw@proxy:3128"})
    assert str(proxy) == "http://proxy:3128"
    assert headers == {"Proxy-Authorization": "Basic dXNlcjpwdw=="}


# --- back-off ---------------------------------------------------------------------------


def test_back_off_grows_and_is_bounded():
    policy = RetryPolicy(attempts=8, first_delay=0.2, max_delay=5.0)
    delays = [policy.delay(n) for n in range(1, 9)]
    assert 0.2 <= delays[0] <= 0.3
    assert all(0.2 <= d <= 7.5 for d in delays)
    assert delays[3] > delays[0]
    assert sum(delays) < 45


# --- one connection ---------------------------------------------------------------------


async def test_dialer_sends_ping_and_open_frame_with_nodelay():
    seen = []

    async def handler(request):
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        for _ in range(2):
            message = await ws.receive(timeout=10)
            seen.append((message.type, message.data))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/v1/data-channel/s", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            dialer = DataChannelDialer(
                http,
                f"ws://127.0.0.1:{port}/v1/data-channel/s?role=publish_subscribe",
                client_id="c-1",
                ca_bundle=None,
                log=LOG,
            )
            sock = await asyncio.wait_for(dialer.open("the-token"), 10)
            raw = sock.ws.get_extra_info("socket")
            assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert ensure_nodelay(sock.ws)
            assert await asyncio.wait_for(sock.receive(), 10) is None  # server closed
            await sock.close()
    finally:
        await runner.cleanup()
    (ping_type, ping_data), (open_type, open_data) = seen
    assert (ping_type, ping_data) == (aiohttp.WSMsgType.PING, b"keepalive")
    assert open_type is aiohttp.WSMsgType.TEXT
    assert '"TokenValue":"the-token","ClientId":"c-1"' in open_data


# --- the retry budget -------------------------------------------------------------------


def pipe_stdin(data):
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    return read_end


def runner_for(service, started, stdin_data=b""):
    stdin = pipe_stdin(stdin_data)
    stdout, stderr = io.BytesIO(), io.StringIO()
    terminal = Terminal(stdin, stdout, stderr, environ={})
    api = ControlPlane(AwsSettings(region="us-east-1", endpoint_url=service.url), LOG)
    options = SessionOptions(started, TARGET, retry=RetryPolicy(attempts=2, first_delay=0.01))
    return ShellRunner(options, api, terminal, LOG), stdin, stdout, stderr


@pytest.fixture
def aws_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example-key")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


async def test_resume_gives_up_after_the_retry_budget(aws_env):
    with fake_service(Scenario(drop_after_lines=1, reject_reconnects=True)) as service:
        response = service.create_session()
        started = StartedSession(
            response["SessionId"], response["TokenValue"], response["StreamUrl"]
        )
        runner, stdin, stdout, stderr = runner_for(service, started, b"seq 3\n")
        try:
            with pytest.raises(TransportFailure) as failure:
                await asyncio.wait_for(runner.run(), 30)
        finally:
            os.close(stdin)
        operations = service.operations()
    assert failure.value.exit_status == 255
    assert failure.value.message.startswith("Error: Failed to open session. ")
    assert "HTTP 503" in failure.value.message
    notices = stderr.getvalue()
    assert "Trying to open session (Retrying. Attempt #1)\n" in notices
    assert "Trying to open session (Retrying. Attempt #2)\n" in notices
    assert "Attempt #3" not in notices
    assert operations == ["AmazonSSM.ResumeSession", "AmazonSSM.ResumeSession"]
    assert stdout.getvalue() == b"1\n"


async def test_first_connection_retries_then_fails(aws_env):
    with fake_service() as service:
        started = StartedSession("s-1", "tok", "ws://127.0.0.1:1/v1/data-channel/s-1")
        runner, stdin, _, stderr = runner_for(service, started)
        try:
            with pytest.raises(TransportFailure) as failure:
                await asyncio.wait_for(runner.run(), 30)
        finally:
            os.close(stdin)
        operations = service.operations()
    assert failure.value.message.startswith("Error: Failed to open session. cannot connect")
    assert "Attempt #2" in stderr.getvalue()
    assert operations == []  # the first connection never calls ResumeSession


async def test_refused_upgrade_is_not_retried(aws_env):
    with fake_service() as service:
        ws_url = service.url.replace("http", "ws")
        started = StartedSession("s-9", "tok", f"{ws_url}/v1/data-channel/unknown")
        runner, stdin, _, stderr = runner_for(service, started)
        try:
            with pytest.raises(TransportFailure) as failure:
                await asyncio.wait_for(runner.run(), 30)
        finally:
            os.close(stdin)
    assert "HTTP 404" in failure.value.message
    assert "Retrying" not in stderr.getvalue()


async def test_untrusted_certificate_is_not_retried(aws_env, tmp_path):
    ca = PrivateCA(tmp_path)
    leaf = ca.issue(["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    with fake_service(ssl_context=context) as service:
        response = service.create_session()
        started = StartedSession("sess-1", response["TokenValue"], response["StreamUrl"])
        runner, stdin, _, stderr = runner_for(service, started)
        try:
            with pytest.raises(TransportFailure) as failure:
                await asyncio.wait_for(runner.run(), 30)
        finally:
            os.close(stdin)
    assert "certificate verify failed" in failure.value.message
    assert "AWS_CA_BUNDLE" in failure.value.message
    assert "Retrying" not in stderr.getvalue()


# --- small pieces -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, {}),
        ("", {}),
        ("a=1", {"a": ["1"]}),
        ("a=1,b=x=y", {"a": ["1"], "b": ["x=y"]}),
        ("a=", {"a": [""]}),
        ('{"portNumber":["22"]}', {"portNumber": ["22"]}),
        (' {"a":"b"} ', {"a": ["b"]}),
    ],
)
def test_parse_parameters(text, expected):
    assert parse_parameters(text) == expected


@pytest.mark.parametrize("text", ["a", "=1", "{", '{"a":[1]}', "[1]"])
def test_parse_parameters_rejects(text):
    with pytest.raises(InvalidArguments):
        parse_parameters(text)


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, 0), (4, 4), (255, 255), (256, 1), (257, 1), (-1, 255), (-1073741819, 5)],
)
def test_exit_status_for_remote_codes(code, status):
    assert exit_status_for(code) == status


@pytest.mark.parametrize(
    ("ssm", "kms"),
    [
        (None, None),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://hatchway.example.net", "https://hatchway.example.net"),
        ("https://ssm.us-east-1.amazonaws.com", None),
        ("https://vpce-1.ssm.us-east-1.vpce.amazonaws.com", None),
        ("https://ssm.cn-north-1.amazonaws.com.cn", None),
    ],
)
def test_kms_follows_a_self_hosted_ssm_endpoint_only(ssm, kms):
    assert kms_endpoint_for(ssm) == kms


def test_closing_lines_match_the_plugin():
    assert closing_line("s-1", "") == "\n\nExiting session with sessionId: s-1.\n\n"
    assert closing_line("s-1", "bye") == "\n\nSessionId: s-1 : bye\n\n"


def test_terminal_size_falls_back_without_a_terminal():
    stdin = pipe_stdin(b"")
    try:
        plain = Terminal(stdin, io.BytesIO(), io.StringIO(), environ={})
        sized = Terminal(
            stdin, io.BytesIO(), io.StringIO(), environ={"COLUMNS": "200", "LINES": "50"}
        )
        assert plain.size() == (80, 24)
        assert sized.size() == (200, 50)
        assert not plain.stdin_is_tty and not plain.stdout_is_tty
        plain.enter_raw()  # a pipe has no mode to change
        assert not plain.raw
    finally:
        os.close(stdin)


async def test_reading_stdin_from_a_regular_file_and_dev_null(tmp_path):
    path = tmp_path / "input"
    path.write_bytes(b"abc")
    for name, expected in ((str(path), b"abc"), (os.devnull, b"")):
        fd = os.open(name, os.O_RDONLY)
        try:
            terminal = Terminal(fd, io.BytesIO(), io.StringIO(), environ={})
            assert await asyncio.wait_for(terminal.read_input(1024), 5) == expected
            assert await asyncio.wait_for(terminal.read_input(1024), 5) == b""
        finally:
            os.close(fd)
