"""The message gateway ("ssmmessages"): control channels to agents, and the REST calls
that open channels (agent.md §1.3-1.4, §1.9, §1.13).

A control channel is one WebSocket per managed node. The server sends
``interactive_shell`` down it to start a session; the agent answers with
``agent_task_complete`` when the session ends.

In a cluster, the node holding an agent's control channel is its route (on the node's
row, with an epoch). Another node sends to the agent by a call over the link between the
two nodes. A session started on another node waits on its row (``start_message``) until
the route's node delivers it: the call says so at once, and each node also looks for
starts waiting for its agents every ``PENDING_START_SECONDS``, so a lost call delays a
start but never loses it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from xml.sax.saxutils import escape

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import select, update

from ..aws.errors import AccessDeniedException, AwsError
from ..protocol import MAX_MESSAGE_BYTES, AgentMessage, MessageType, ProtocolError, decode
from ..protocol.payloads import get_field, load_object
from . import tokens
from .auth import authenticate
from .bodies import CHANNEL_REQUEST_BYTES, read_body
from .cluster.links import ANSWER_SECONDS, Link, PeerLinks, PeerUnreachable
from .iam.principals import Principal, PrincipalKind
from .results import ResultRecorder, SessionResult
from .state import ServerState
from .storage.models import ManagedInstance, Session
from .supervise import Supervisor

log = logging.getLogger("hatchway.server.mgs")

SIGNING_NAME = "ssmmessages"
CONTROL_PING_SECONDS = 60.0
# How often each node looks for session starts waiting for the agents it holds.
PENDING_START_SECONDS = 1.0


def now_utc() -> datetime:
    return datetime.now(UTC)


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def xml_error(error: AwsError) -> web.Response:
    # The agent looks for <AccessDeniedException> in error bodies (agent.md §1.3).
    code = escape(error.code)
    body = f"<{code}><Message>{escape(error.message)}</Message></{code}>"
    return web.Response(
        status=403 if error.status in (400, 403) else error.status,
        text=body,
        content_type="application/xml",
    )


def token_response(token: str) -> web.Response:
    body = (
        "<CreateChannelResponse><MessageSchemaVersion>1.0</MessageSchemaVersion>"
        f"<TokenValue>{escape(token)}</TokenValue></CreateChannelResponse>"
    )
    return web.Response(status=201, text=body, content_type="application/xml")


def as_text(message: AgentMessage) -> str:
    """A message for a peer call or the session's row, which hold text."""
    return base64.b64encode(message.encode()).decode()


def from_text(text: str) -> AgentMessage:
    try:
        return decode(base64.b64decode(text, validate=True))
    except binascii.Error as exc:
        raise ProtocolError(f"not base64: {exc}") from None


class ControlChannel:
    """One agent's live control channel on this server."""

    def __init__(self, instance_id: str, ws: web.WebSocketResponse, epoch: int) -> None:
        self.instance_id = instance_id
        self.ws = ws
        self.epoch = epoch  # the route's epoch this channel set
        self.lock = asyncio.Lock()
        self.opened = now_utc()

    async def send(self, message: AgentMessage) -> None:
        async with self.lock:
            await self.ws.send_bytes(message.encode())


class ChannelWatcher(Protocol):
    """Told when an agent's control channel opens or drops, and which sessions a Hatchway
    agent says it still runs when it (re)connects."""

    async def channel_opened(self, instance_id: str) -> None: ...

    async def channel_closed(self, instance_id: str) -> None: ...

    async def live_sessions(
        self, instance_id: str, session_ids: list[str], opened: datetime
    ) -> None: ...


class MessageGateway:
    """Control channels of the agents connected to this server, and their messages."""

    def __init__(self, state: ServerState, links: PeerLinks) -> None:
        self.state = state
        self.me = state.config.node_name
        self.links = links
        for op, handler in (
            ("to_agent", self._to_agent_from_peer),
            ("deliver", self._deliver_from_peer),
            ("diagnose", self._diagnose_from_peer),
            ("disconnect", self._disconnect_from_peer),
        ):
            links.handle(op, handler)
        self.channels: dict[str, ControlChannel] = {}
        self._channel_opened = asyncio.Event()
        self.supervisor = Supervisor()
        self.task_complete_handlers: list[Any] = []
        self.watchers: list[ChannelWatcher] = []
        self._closing = False
        # Session results, recorded once each, in order, by one supervised task.
        self.results = ResultRecorder()
        self._result_arrived = asyncio.Event()
        # Diagnostic requests sent to agents, by RequestId: (instance id, its answer).
        self._diagnoses: dict[str, tuple[str, asyncio.Future[list[dict[str, Any]]]]] = {}

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self._forget_own_channels()
        self.supervisor.start("control channel heartbeat", self._keep_pings_fresh)
        self.supervisor.start("session result recorder", self._record_next_result)
        self.supervisor.start("pending session starts", self._deliver_pending)

    async def close(self) -> None:
        await self.supervisor.stop()
        await self.close_channels()

    async def close_channels(self) -> None:
        """1001 to every agent, so it reconnects at once instead of waiting out a timeout."""
        self._closing = True  # the agents are not going away: this server is
        for channel in list(self.channels.values()):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await channel.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _keep_pings_fresh(self) -> float:
        """A live channel counts as a ping; other server nodes read last_ping from the
        database. Only the routes still this node's are refreshed. The seconds until the
        next one."""
        if self.channels:
            async with self.state.db() as db, db.begin():
                await db.execute(
                    update(ManagedInstance)
                    .where(
                        ManagedInstance.instance_id.in_(list(self.channels)),
                        ManagedInstance.connected_to == self.me,
                    )
                    .values(last_ping=now_utc())
                )
        return self.state.config.heartbeat_seconds

    async def _forget_own_channels(self) -> None:
        """A new process holds no control channels yet: the nodes a crashed predecessor of
        this server node marked as connected to it are not, until they reconnect."""
        async with self.state.db() as db, db.begin():
            await db.execute(
                update(ManagedInstance)
                .where(ManagedInstance.connected_to == self.me)
                .values(connected_to=None)
            )

    async def _claim_route(self, instance_id: str) -> int:
        """This node now holds the agent's control channel: the route's new epoch."""
        async with self.state.db() as db, db.begin():
            await db.execute(
                update(ManagedInstance)
                .where(ManagedInstance.instance_id == instance_id)
                .values(
                    connected_to=self.me,
                    last_ping=now_utc(),
                    route_epoch=ManagedInstance.route_epoch + 1,
                )
            )
            epoch = await db.scalar(
                select(ManagedInstance.route_epoch).where(
                    ManagedInstance.instance_id == instance_id
                )
            )
        return epoch or 0

    async def _release_route(self, channel: ControlChannel) -> None:
        """The channel closed: clear the route, unless a newer channel (here or on another
        node) has set it since."""
        async with self.state.db() as db, db.begin():
            await db.execute(
                update(ManagedInstance)
                .where(
                    ManagedInstance.instance_id == channel.instance_id,
                    ManagedInstance.connected_to == self.me,
                    ManagedInstance.route_epoch == channel.epoch,
                )
                .values(connected_to=None)
            )

    async def reassert_routes(self) -> None:
        """After the database was away, the other nodes may have cleared this node's routes
        as a dead node's: put back the ones no newer channel has taken since."""
        async with self.state.db() as db, db.begin():
            for channel in list(self.channels.values()):
                await db.execute(
                    update(ManagedInstance)
                    .where(
                        ManagedInstance.instance_id == channel.instance_id,
                        ManagedInstance.route_epoch == channel.epoch,
                    )
                    .values(connected_to=self.me, last_ping=now_utc())
                )

    async def held_elsewhere(self, instance_id: str) -> str | None:
        """The other node that holds the agent's control channel, as the database says;
        None when this node holds it, or none does."""
        if instance_id in self.channels:
            return None
        async with self.state.db() as db:
            node = await db.scalar(
                select(ManagedInstance.connected_to).where(
                    ManagedInstance.instance_id == instance_id
                )
            )
        return None if node == self.me else node

    # --- what the rest of the server asks ------------------------------------------------

    def is_connected(self, instance_id: str) -> bool:
        return instance_id in self.channels

    async def wait_connected(self, instance_id: str) -> None:
        """Until ``instance_id`` has a control channel; the caller bounds the wait."""
        while not self.is_connected(instance_id):
            self._channel_opened.clear()
            await self._channel_opened.wait()

    async def send(self, instance_id: str, message: AgentMessage) -> bool:
        """Down the agent's control channel, here or through the node that holds it."""
        channel = self.channels.get(instance_id)
        if channel is None:
            return await self._send_elsewhere(instance_id, message)
        try:
            await channel.send(message)
        except (ConnectionError, RuntimeError) as exc:
            log.warning(
                "control channel send failed", extra={"target": instance_id, "error": str(exc)}
            )
            return False
        return True

    async def _send_elsewhere(self, instance_id: str, message: AgentMessage) -> bool:
        node = await self.held_elsewhere(instance_id)
        if node is None:
            return False
        answer = await self._ask(node, "to_agent", instance=instance_id, message=as_text(message))
        return answer.get("ok") is True

    async def _ask(
        self, node: str, op: str, *, answer_within: float = ANSWER_SECONDS, **fields: Any
    ) -> dict[str, Any]:
        try:
            return await self.links.request(node, op, answer_within=answer_within, **fields)
        except PeerUnreachable as exc:
            log.warning("peer call failed", extra={"peer": node, "op": op, "error": str(exc)})
            return {"ok": False, "reason": str(exc)}

    async def _to_agent_from_peer(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        instance_id, encoded = message.get("instance"), message.get("message")
        if not isinstance(instance_id, str) or not isinstance(encoded, str):
            return {"ok": False, "reason": "bad to_agent"}
        try:
            agent_message = from_text(encoded)
        except ProtocolError as exc:
            return {"ok": False, "reason": f"bad message: {exc}"}
        channel = self.channels.get(instance_id)
        return {"ok": channel is not None and await self.send(instance_id, agent_message)}

    async def _disconnect_from_peer(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        instance_id, reason = message.get("instance"), message.get("reason", "")
        if isinstance(instance_id, str) and isinstance(reason, str):
            await self.disconnect(instance_id, reason)
        return {"ok": True}

    async def _diagnose_from_peer(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        instance_id, request, wait = (
            message.get("instance"),
            message.get("request"),
            message.get("wait"),
        )
        if (
            not isinstance(instance_id, str)
            or not isinstance(request, dict)
            or not isinstance(wait, int | float)
            or instance_id not in self.channels
        ):
            return {"ok": False}
        results = await self.diagnose(instance_id, request, min(float(wait), 60.0))
        return {"ok": results is not None, "results": results or []}

    # --- starts made on other nodes -----------------------------------------------------

    async def start_elsewhere(
        self, session_id: str, instance_id: str, message: AgentMessage
    ) -> bool:
        """Leave a session's start on its row for the node that holds the agent's control
        channel, and tell that node; false when no node holds it."""
        node = await self.held_elsewhere(instance_id)
        if node is None:
            return False
        async with self.state.db() as db, db.begin():
            await db.execute(
                update(Session)
                .where(Session.session_id == session_id)
                .values(start_message=as_text(message))
            )
        await self._ask(node, "deliver", session=session_id)  # if lost, the poll finds it
        return True

    async def _deliver_from_peer(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        session_id = message.get("session")
        if not isinstance(session_id, str):
            return {"ok": False, "reason": "bad deliver"}
        return {"ok": await self._deliver(session_id)}

    async def _deliver(self, session_id: str) -> bool:
        """Send a waiting start to its agent, if this node holds the agent's channel. The
        row is cleared first (two nodes never both send it) and restored if the send
        fails."""
        async with self.state.db() as db, db.begin():
            row = await db.get(Session, session_id)
            if row is None or row.start_message is None or row.target not in self.channels:
                return False
            waiting, row.start_message = row.start_message, None
        try:
            message = from_text(waiting)
        except ProtocolError as exc:
            log.error("a waiting session start does not decode", extra={"error": str(exc)})
            return False
        if await self.send(row.target, message):
            log.info("session start delivered", extra={"session_id": session_id})
            return True
        async with self.state.db() as db, db.begin():
            await db.execute(
                update(Session)
                .where(Session.session_id == session_id, Session.start_message.is_(None))
                .values(start_message=waiting)
            )
        return False

    async def _deliver_pending(self) -> float:
        """The poll behind the calls: starts waiting for an agent this node holds."""
        if self.channels:
            async with self.state.db() as db:
                waiting = list(
                    await db.scalars(
                        select(Session.session_id)
                        .join(ManagedInstance, ManagedInstance.instance_id == Session.target)
                        .where(
                            Session.status == "Connecting",
                            Session.start_message.is_not(None),
                            ManagedInstance.connected_to == self.me,
                        )
                    )
                )
            for session_id in waiting:
                await self._deliver(session_id)
        return PENDING_START_SECONDS

    async def diagnose(
        self, instance_id: str, request: dict[str, Any], wait_seconds: float
    ) -> list[dict[str, Any]] | None:
        """Ask the agent to check its side (doctor); its results, or None when it does
        not answer within ``wait_seconds`` (an official agent never does)."""
        if instance_id not in self.channels:
            node = await self.held_elsewhere(instance_id)
            if node is None:
                return None
            reply = await self._ask(
                node,
                "diagnose",
                answer_within=wait_seconds + 5.0,
                instance=instance_id,
                request=request,
                wait=wait_seconds,
            )
            results = reply.get("results")
            return results if reply.get("ok") is True and isinstance(results, list) else None
        request_id = str(uuid.uuid4())
        answer: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._diagnoses[request_id] = (instance_id, answer)
        message = AgentMessage(
            message_type=MessageType.HATCHWAY_DIAGNOSE,
            created_date=millis(now_utc()),
            message_id=uuid.uuid4(),
            payload=json.dumps({**request, "RequestId": request_id}).encode(),
        )
        try:
            if not await self.send(instance_id, message):
                return None
            return await asyncio.wait_for(answer, wait_seconds)
        except TimeoutError:
            return None
        finally:
            self._diagnoses.pop(request_id, None)

    def _diagnosed(self, channel: ControlChannel, message: AgentMessage) -> None:
        try:
            payload = load_object(message.payload, "hatchway_diagnose_result")
            request_id = get_field(payload, "RequestId", str, "hatchway_diagnose_result")
            results = get_field(payload, "Results", list, "hatchway_diagnose_result")
        except ProtocolError as exc:
            log.warning(
                "bad diagnose result", extra={"target": channel.instance_id, "error": str(exc)}
            )
            return
        pending = self._diagnoses.get(request_id)
        # Only the agent that was asked may answer.
        if pending is not None and pending[0] == channel.instance_id and not pending[1].done():
            pending[1].set_result([item for item in results if isinstance(item, dict)])

    async def disconnect(self, instance_id: str, reason: str) -> None:
        channel = self.channels.get(instance_id)
        if channel is None:
            node = await self.held_elsewhere(instance_id)
            if node is not None:
                await self._ask(node, "disconnect", instance=instance_id, reason=reason)
        else:
            log.info("closing control channel", extra={"target": instance_id, "reason": reason})
            await channel.ws.close(message=reason.encode()[:120])

    # --- handlers -----------------------------------------------------------------------

    async def node_principal(
        self, request: web.Request, body: bytes, instance_id: str
    ) -> Principal:
        principal = await authenticate(self.state, request, body, SIGNING_NAME, now_utc())
        if principal.kind is not PrincipalKind.NODE or principal.name != instance_id:
            raise AccessDeniedException(
                f"User: {principal.arn} is not authorized to perform: "
                f"ssmmessages:CreateControlChannel on resource: {instance_id}"
            )
        return principal

    async def create_control_channel(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        try:
            body = await read_body(request, CHANNEL_REQUEST_BYTES, self.state.config.body_timeout)
            await self.node_principal(request, body, instance_id)
            async with self.state.db() as db, db.begin():
                token = await tokens.issue(
                    db, instance_id, "control", now_utc(), self.state.config.token_lifetime
                )
        except AwsError as error:
            return xml_error(error)
        return token_response(token)

    async def control_channel(self, request: web.Request) -> web.StreamResponse:
        instance_id = request.match_info["instance_id"]
        try:
            await self.node_principal(request, b"", instance_id)
        except AwsError as error:
            return xml_error(error)
        # Pings find agents that vanished without closing TCP (power loss, partition).
        ws = web.WebSocketResponse(heartbeat=CONTROL_PING_SECONDS, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        opened = await self._open(ws, instance_id)
        if not opened:
            await ws.close(message=b"invalid token")
            return ws
        previous = self.channels.get(instance_id)
        channel = ControlChannel(instance_id, ws, await self._claim_route(instance_id))
        self.channels[instance_id] = channel
        self._channel_opened.set()
        if previous is not None:
            await previous.ws.close(message=b"replaced by a newer control channel")
        log.info("control channel open", extra={"target": instance_id})
        await self._tell_watchers(instance_id, lambda watcher: watcher.channel_opened(instance_id))
        try:
            async for frame in ws:
                if frame.type == WSMsgType.BINARY:
                    await self._on_message(channel, frame.data)
                elif frame.type == WSMsgType.ERROR:
                    break
        finally:
            if self.channels.get(instance_id) is channel:
                del self.channels[instance_id]
                if not self._closing:
                    await self._tell_watchers(
                        instance_id, lambda watcher: watcher.channel_closed(instance_id)
                    )
                await self._release_route(channel)
            log.info("control channel closed", extra={"target": instance_id})
        return ws

    async def _open(self, ws: web.WebSocketResponse, instance_id: str) -> bool:
        try:
            async with asyncio.timeout(self.state.config.channel_open_seconds):  # pings or not
                first = await ws.receive()
        except TimeoutError:
            return False
        if first.type != WSMsgType.TEXT:
            return False
        try:
            opening = load_object(first.data, "OpenControlChannel")
            token = get_field(opening, "TokenValue", str, "OpenControlChannel")
        except ProtocolError as exc:
            log.warning("bad OpenControlChannel", extra={"target": instance_id, "error": str(exc)})
            return False
        async with self.state.db() as db, db.begin():
            return await tokens.redeem(db, token, instance_id, "control", now_utc())

    async def _on_message(self, channel: ControlChannel, data: bytes) -> None:
        try:
            message = decode(data)
        except ProtocolError as exc:
            log.warning(
                "dropped a bad control message",
                extra={"target": channel.instance_id, "error": str(exc)},
            )
            return
        if message.message_type == MessageType.AGENT_TASK_COMPLETE:
            await self._task_complete(channel, message)
        elif message.message_type == MessageType.HATCHWAY_DIAGNOSE_RESULT:
            self._diagnosed(channel, message)
        elif message.message_type == MessageType.HATCHWAY_LIVE_SESSIONS:
            await self._live_sessions(channel, message)
        # agent_telemetry, agent_update_result and the rest are accepted and ignored.

    async def _tell_watchers(
        self, instance_id: str, tell: Callable[[ChannelWatcher], Awaitable[None]]
    ) -> None:
        for watcher in self.watchers:
            try:
                await tell(watcher)
            except Exception:
                log.exception("a control channel watcher failed", extra={"target": instance_id})

    async def _live_sessions(self, channel: ControlChannel, message: AgentMessage) -> None:
        try:
            payload = load_object(message.payload, "hatchway_live_sessions")
            ids = get_field(payload, "SessionIds", list, "hatchway_live_sessions")
        except ProtocolError as exc:
            log.warning(
                "bad hatchway_live_sessions",
                extra={"target": channel.instance_id, "error": str(exc)},
            )
            return
        live = [item for item in ids if isinstance(item, str)]
        await self._tell_watchers(
            channel.instance_id,
            lambda watcher: watcher.live_sessions(channel.instance_id, live, channel.opened),
        )

    async def _task_complete(self, channel: ControlChannel, message: AgentMessage) -> None:
        try:
            payload = load_object(message.payload, "agent_task_complete")
            session_id = get_field(payload, "TaskId", str, "agent_task_complete")
            status = get_field(payload, "FinalTaskStatus", str, "agent_task_complete", default="")
            output = get_field(payload, "Output", str, "agent_task_complete", default="")
            topic = get_field(payload, "Topic", str, "agent_task_complete", default="")
        except ProtocolError as exc:
            log.warning(
                "bad agent_task_complete", extra={"target": channel.instance_id, "error": str(exc)}
            )
            return
        ack = {
            "SchemaVersion": 1,
            "MessageId": str(message.message_id),
            "TaskId": session_id,
            "Topic": topic,
        }
        await channel.send(
            AgentMessage(
                message_type=MessageType.AGENT_TASK_ACKNOWLEDGE,
                created_date=millis(now_utc()),
                payload=json.dumps(ack).encode(),
            )
        )
        # Recording the result touches the database; do it beside the read loop, so one
        # agent's burst of results does not hold back the acknowledgements of the rest.
        # One task records them all, in the order they came: the first result stands.
        result = SessionResult(session_id, channel.instance_id, status, output)
        if self.results.received(result):
            self._result_arrived.set()
        else:
            log.debug("repeated session result", extra={"session_id": session_id, "status": status})

    async def _record_next_result(self) -> None:
        """Record the oldest result waiting. A failure (the database is away) leaves it
        first in line, and the supervisor retries it."""
        while (result := self.results.next()) is None:
            self._result_arrived.clear()
            await self._result_arrived.wait()
        async with self.state.db() as db:
            session = await db.get(Session, result.session_id)
        if session is not None and session.target == result.instance_id:
            for handler in self.task_complete_handlers:
                await handler(result.session_id, result.status, result.output)
        self.results.recorded(result)


def interactive_shell_message(
    session_id: str,
    document_name: str,
    content: dict[str, Any],
    parameters: dict[str, Any],
    run_as: str,
    owner: str,
    now: datetime,
) -> AgentMessage:
    """The message that starts a session on the agent (agent.md §1.8)."""
    task = {
        "DocumentName": document_name,
        "DocumentContent": content,
        "SessionId": session_id,
        "Parameters": parameters,
        "RunAsUser": run_as,
        "SessionOwner": owner,
    }
    payload = {
        "Content": json.dumps(task),
        "TaskId": session_id,
        "Topic": "aws.ssm.startSession",
        "SchemaVersion": 1,
    }
    return AgentMessage(
        message_type=MessageType.INTERACTIVE_SHELL,
        created_date=millis(now),
        message_id=uuid.uuid4(),
        payload=json.dumps(payload).encode(),
    )


@contextlib.asynccontextmanager
async def gateway_for(state: ServerState, links: PeerLinks) -> AsyncIterator[MessageGateway]:
    gateway = MessageGateway(state, links)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.close()
