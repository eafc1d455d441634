"""A fake Session Manager for client tests, on 127.0.0.1 only.

One aiohttp app plays both sides the client talks to:
- the control plane: AWS JSON 1.1 ``AmazonSSM.StartSession`` / ``ResumeSession`` /
  ``TerminateSession`` and ``TrentService.GenerateDataKey`` (no signature checks);
- the data channel: a WebSocket at StreamUrl that reads the OpenDataChannel text frame,
  checks the token, and then plays agent plus relay with ``DataChannel(Role.AGENT)``.

The agent side runs a tiny line "shell" (``echo``, ``seq``, ``stderr``, ``exit``,
``close-with``), or in echo mode reports every input chunk and size it receives.
It runs in its own event loop thread so the client can run as a subprocess.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from hatchway.protocol import (
    AgentMessage,
    ChannelClosed,
    DataChannel,
    EncChallengeRequest,
    EncChallengeResponse,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    OpenDataChannel,
    PayloadType,
    Role,
    SessionCipher,
    TerminalSize,
    decode,
)
from hatchway.protocol.stream import StreamData
from tests.proxy import ConnectProxy

TARGET = "mi-0123456789abcdef0"
KMS_MESSAGE = "This session is encrypted using AWS KMS."

START = (
    "from hatchway.client.commands import start_session; "
    "start_session.main(prog_name='hatchway start-session')"
)
PLUGIN = (
    "from hatchway.client.commands import session_manager_plugin; "
    "session_manager_plugin.main(prog_name='session-manager-plugin')"
)


def client_command(code: str, *args: str) -> list[str]:
    """Run a client command in a fresh interpreter, as the real CLI would."""
    return [sys.executable, "-c", code, *args]


@dataclass
class Scenario:
    handshake: bool = True
    session_type: str = "Standard_Stream"
    kms_key_id: str | None = None
    customer_message: str = ""
    prompt: bytes = b""  # the first output of an agent without a handshake
    echo_mode: bool = False
    drop_after_lines: int | None = None  # abort the first socket after this many outputs
    withhold_acks_until_drop: bool = False
    drop_with_close_frame: bool = False
    resume_gives_token: bool = True
    reject_reconnects: bool = False
    start_error: tuple[str, str] | None = None
    resume_error: tuple[str, str] | None = None


@dataclass
class PeerSession:
    session_id: str
    target: str
    scenario: Scenario
    tokens: set[str]
    tokens_issued: int = 1
    channel: DataChannel = field(default_factory=lambda: DataChannel(Role.AGENT))
    connections: int = 0
    ws: web.WebSocketResponse | None = None
    transport: Any = None
    handshake_done: bool = False
    closed: bool = False
    lines_sent: int = 0
    line: bytearray = field(default_factory=bytearray)
    inputs: bytearray = field(default_factory=bytearray)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    responses: list[HandshakeResponse] = field(default_factory=list)
    challenge: bytes = b""
    secret: bytes = b""
    held: list[bytes] = field(default_factory=list)
    kms_keys: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def withholding_acks(self) -> bool:
        return self.scenario.withhold_acks_until_drop and self.connections == 1

    # --- wire ---------------------------------------------------------------------------

    async def flush(self) -> None:
        frames = self.channel.data_to_send()
        ws = self.ws
        if ws is None or ws.closed:
            # Stream messages go again on the next connection (resend_unacked); the
            # service would still deliver channel_closed then, so keep that one.
            self.held.extend(f for f in frames if decode(f).message_type == "channel_closed")
            return
        frames, self.held = frames + self.held, []
        for frame in frames:
            if self.withholding_acks and decode(frame).message_type == "acknowledge":
                continue
            try:
                await ws.send_bytes(frame)
            except ConnectionError:
                return  # the client went away; what it lacks goes again on reconnect

    async def send(self, payload: bytes, payload_type: int = PayloadType.OUTPUT) -> None:
        self.channel.send(payload, payload_type, now=time.time())
        await self.flush()

    async def drop(self) -> None:
        """Cut the TCP connection with no close frame, like a network failure; or close
        the WebSocket properly, as MGS does about once an hour."""
        ws, self.ws = self.ws, None
        if self.scenario.drop_with_close_frame and ws is not None:
            await ws.close(code=1000, message=b"rotating")
        else:
            self.transport.abort()

    async def close(self, output: str = "") -> None:
        closed = ChannelClosed(self.session_id, uuid.uuid4(), "2024-01-01T00:00:00Z", output=output)
        self.channel.send_message(
            AgentMessage(
                message_type=MessageType.CHANNEL_CLOSED,
                created_date=int(time.time() * 1000),
                flags=3,
                payload=closed.to_json(),
            )
        )
        self.closed = True
        await self.flush()

    # --- agent behaviour ----------------------------------------------------------------

    async def begin(self) -> None:
        scenario = self.scenario
        if scenario.handshake or scenario.kms_key_id:
            self.challenge = os.urandom(16)
            request = HandshakeRequest.build(
                "3.3.987.0",
                scenario.session_type,
                {"portNumber": "22"} if scenario.session_type == "Port" else None,
                kms_key_id=scenario.kms_key_id,
                challenge=self.challenge if scenario.kms_key_id else None,
            )
            await self.send(request.to_json(), PayloadType.HANDSHAKE_REQUEST)
        else:
            self.handshake_done = True
            if scenario.prompt:
                await self.output(scenario.prompt)

    async def on_frame(self, frame: bytes) -> None:
        self.channel.receive(frame, now=time.time())
        while (event := self.channel.next_event()) is not None:
            if isinstance(event, StreamData) and not self.closed:
                await self.on_stream(event)
        await self.flush()

    async def on_stream(self, event: StreamData) -> None:
        kind, payload = event.payload_type, event.payload
        if kind == PayloadType.HANDSHAKE_RESPONSE:
            await self.on_handshake_response(HandshakeResponse.from_json(payload))
        elif kind == PayloadType.ENC_CHALLENGE_RESPONSE:
            assert self.channel.cipher is not None
            answer = EncChallengeResponse.from_json(payload).challenge
            if not self.channel.cipher.check_challenge(self.secret, answer):
                await self.close("Encryption challenge does not match!")
                return
            await self.complete(KMS_MESSAGE)
        elif kind == PayloadType.SIZE:
            size = TerminalSize.from_json(payload)
            self.sizes.append((size.cols, size.rows))
            if self.scenario.echo_mode and self.handshake_done:
                await self.output(f"SIZE {size.cols}x{size.rows}\r\n".encode())
        elif kind == PayloadType.OUTPUT and self.handshake_done:
            # Agents drop input that arrives during a handshake (agent.md §1.12).
            self.inputs.extend(payload)
            await self.on_input(payload)

    async def on_handshake_response(self, response: HandshakeResponse) -> None:
        self.responses.append(response)
        failed = [a for a in response.actions if a.status != 1]
        if failed:
            action = failed[0]
            await self.close(
                f"{action.action_type} failed on client with status {action.status} "
                f"error: {action.error}"
            )
            return
        blob = response.kms_ciphertext_key
        if blob is None:
            await self.complete(self.scenario.customer_message)
            return
        cipher = SessionCipher(self.kms_keys[blob], Role.AGENT)
        self.channel.set_cipher(cipher)
        self.secret = os.urandom(64)
        challenge = EncChallengeRequest(cipher.encrypt(self.secret))
        await self.send(challenge.to_json(), PayloadType.ENC_CHALLENGE_REQUEST)

    async def complete(self, message: str) -> None:
        self.handshake_done = True
        complete = HandshakeComplete(1_000_000, message)
        await self.send(complete.to_json(), PayloadType.HANDSHAKE_COMPLETE)

    async def output(self, data: bytes, payload_type: int = PayloadType.OUTPUT) -> None:
        await self.send(data, payload_type)
        self.lines_sent += 1
        limit = self.scenario.drop_after_lines
        if limit is not None and self.connections == 1 and self.lines_sent == limit:
            await self.drop()

    async def on_input(self, data: bytes) -> None:
        if self.scenario.echo_mode:
            await self.output(f"<{data.hex()}>".encode())
            if b"q" in data:
                await self.send(b"EXIT_CODE: 7", PayloadType.EXIT_CODE)
                await self.close()
            return
        for byte in data:
            if self.closed:
                return
            if byte == 0x04 and not self.line:
                await self.close()  # end of input at the start of a line, as a shell
            elif byte in b"\r\n":
                line, self.line = bytes(self.line).decode(), bytearray()
                await self.run(line)
            else:
                self.line.append(byte)

    async def run(self, line: str) -> None:
        command, _, argument = line.strip().partition(" ")
        if command == "echo":
            await self.output(f"{argument}\n".encode())
        elif command == "seq":
            for number in range(1, int(argument) + 1):
                await self.output(f"{number}\n".encode())
        elif command == "stderr":
            await self.output(f"{argument}\n".encode(), PayloadType.STDERR)
        elif command == "exit":
            await self.send(f"prefix EXIT_CODE: {argument}".encode(), PayloadType.EXIT_CODE)
            await self.close()
        elif command == "close-with":
            await self.close(argument)
        elif command:
            await self.output(f"unknown command {command}\n".encode())


class FakeService:
    """The app, run on 127.0.0.1 in a thread with its own loop."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        stream_host: str = "127.0.0.1",
    ) -> None:
        self.scenario = scenario or Scenario()
        self.ssl_context = ssl_context
        self.stream_host = stream_host  # the host name StreamUrl carries
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.opens: list[dict[str, Any]] = []
        self.sessions: dict[str, PeerSession] = {}
        self.url = ""
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._proxy: ConnectProxy | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeService:
        self._thread.start()
        self.url = self._run(self._start())
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self.control)
        app.router.add_get("/v1/data-channel/{session_id}", self.data_channel)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _stop(self) -> None:
        if self._proxy is not None:
            await self._proxy.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def start_proxy(self) -> str:
        """An HTTP CONNECT proxy that sends every tunnel to this service's port."""
        return str(self._run(self._start_proxy()))

    async def _start_proxy(self) -> str:
        self._proxy = ConnectProxy(self.port)
        return await self._proxy.start()

    # --- what tests look at -------------------------------------------------------------

    @property
    def proxied(self) -> list[tuple[str, dict[str, str]]]:
        """The CONNECT targets and headers the proxy saw."""
        return self._proxy.tunnels if self._proxy is not None else []

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def only_session(self) -> PeerSession:
        (session,) = self.sessions.values()
        return session

    def create_session(self, target: str = TARGET) -> dict[str, str]:
        """A session as StartSession would make it, for plugin tests that skip the CLI."""
        return self._new_session(target)

    # --- control plane ------------------------------------------------------------------

    def _new_session(self, target: str) -> dict[str, str]:
        session_id = f"sess-{len(self.sessions) + 1}"
        token = f"token-{session_id}-0"
        self.sessions[session_id] = PeerSession(session_id, target, self.scenario, {token})
        scheme = "wss" if self.ssl_context else "ws"
        base = f"{scheme}://{self.stream_host}:{self.port}"
        return {
            "SessionId": session_id,
            "TokenValue": token,
            "StreamUrl": f"{base}/v1/data-channel/{session_id}?role=publish_subscribe",
        }

    async def control(self, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "")
        body = json.loads(await request.read() or b"{}")
        self.calls.append((operation, body))
        if operation == "AmazonSSM.StartSession":
            if self.scenario.start_error is not None:
                code, message = self.scenario.start_error
                return _error(code, message)
            return _json(self._new_session(body["Target"]))
        if operation == "AmazonSSM.ResumeSession":
            if self.scenario.resume_error is not None:
                return _error(*self.scenario.resume_error)
            return _json(self._resume(body["SessionId"]))
        if operation == "AmazonSSM.TerminateSession":
            return _json({"SessionId": body["SessionId"]})
        if operation == "TrentService.GenerateDataKey":
            return _json(self._data_key(body))
        return _error("UnknownOperationException", operation)

    def _resume(self, session_id: str) -> dict[str, Any]:
        session = self.sessions[session_id]
        # A StreamUrl that leads nowhere: clients must reconnect to the original one.
        answer: dict[str, Any] = {"SessionId": session_id, "StreamUrl": "ws://127.0.0.1:9/x"}
        if not self.scenario.resume_gives_token:
            answer["TokenValue"] = None
            return answer
        token = f"token-{session_id}-{session.tokens_issued}"
        session.tokens_issued += 1
        session.tokens.add(token)
        answer["TokenValue"] = token
        return answer

    def _data_key(self, body: dict[str, Any]) -> dict[str, str]:
        session_id = body["EncryptionContext"]["aws:ssm:SessionId"]
        key, blob = os.urandom(64), b"kms-blob-" + os.urandom(8)
        self.sessions[session_id].kms_keys[blob] = key
        return {
            "CiphertextBlob": base64.b64encode(blob).decode(),
            "Plaintext": base64.b64encode(key).decode(),
            "KeyId": body["KeyId"],
        }

    # --- data channel -------------------------------------------------------------------

    async def data_channel(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return web.Response(status=404)
        if self.scenario.reject_reconnects and session.connections >= 1:
            return web.Response(status=503, text="no more connections")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive(timeout=10)
        if first.type is not WSMsgType.TEXT:
            await ws.close()
            return ws
        self.opens.append(json.loads(first.data))
        opening = OpenDataChannel.from_json(first.data)
        if opening.token not in session.tokens:
            await ws.close(code=4003, message=b"bad token")
            return ws
        session.tokens.discard(opening.token)  # each token opens one connection
        session.connections += 1
        session.ws, session.transport = ws, request.transport
        if session.connections == 1:
            await session.begin()
        else:
            session.channel.resend_unacked(time.time())
            await session.flush()
        ticker = asyncio.create_task(_retransmit(session))
        try:
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    await session.on_frame(message.data)
        finally:
            ticker.cancel()
            if session.ws is ws:
                session.ws = None
        return ws


async def _retransmit(session: PeerSession) -> None:
    while True:
        await asyncio.sleep(0.05)
        session.channel.tick(time.time())
        await session.flush()


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(
        text=json.dumps(body),
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )


def _error(code: str, message: str) -> web.Response:
    return web.Response(
        status=400,
        text=json.dumps({"__type": code, "message": message}),
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-ErrorType": code},
    )


@contextlib.contextmanager
def fake_service(scenario: Scenario | None = None, **options: Any) -> Iterator[FakeService]:
    service = FakeService(scenario, **options).start()
    try:
        yield service
    finally:
        service.stop()


def client_env(service: FakeService | None = None, **extra: str) -> dict[str, str]:
    """An environment with dummy credentials and nothing from the real AWS configuration."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and not key.lower().endswith("_proxy")
    }
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE00000000",
        AWS_SECRET_ACCESS_KEY="secret-example-key",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_CONFIG_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
    )
    if service is not None:
        env["AWS_ENDPOINT_URL"] = service.url
    env.update(extra)
    return env
