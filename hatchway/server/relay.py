"""The data-channel relay: pairs a session's client WebSocket with its agent WebSocket and
passes frames between them untouched (so end-to-end encryption stays end to end). Message
types sit in the unencrypted header: a client is given only those clients understand
(client_frames.py).

Each side proves itself with a single-use token in its first text frame; the agent side
must also sign its upgrade as the session's target node. Nothing is relayed before the
token checks out. Frames for a side that is not connected yet (or is reconnecting) wait in
a small bounded queue; past the bound they are dropped, and the reliable layer at the ends
retransmits them.

In a cluster, one node pairs each session's two ends: its home (cluster/homes.py), the node
the first side reached. A side whose WebSocket reaches another node is checked there and
then carried to the home over the link between the two nodes (cluster/edge.py), where a
stream stands in for its WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import select, update

from ..aws.errors import AccessDeniedException, AwsError
from ..protocol import (
    AGENT_PRESENCE_FEATURE,
    FEATURES_HEADER,
    MAX_MESSAGE_BYTES,
    Acknowledge,
    AgentMessage,
    AgentPresence,
    ChannelClosed,
    Flags,
    MessageType,
    OpenDataChannel,
    ProtocolError,
    decode,
    parse_features,
    peek_message_type,
    peek_sequence_number,
)
from . import tokens
from .auth import authenticate
from .bodies import CHANNEL_REQUEST_BYTES, read_body
from .client_frames import for_client
from .cluster.edge import carry
from .cluster.homes import Home, home_of, settle, take_over
from .cluster.links import Link, PeerLinks, PeerUnreachable
from .iam.principals import PrincipalKind
from .limits import SessionLimits
from .mgs import SIGNING_NAME, token_response, xml_error
from .pairing import JOINABLE, ROLES, may_join, role_of
from .pairing import Pairing as SocketPairing
from .pairing import Side as SocketSide
from .state import ServerState
from .storage.models import Session
from .supervise import Supervisor

log = logging.getLogger("hatchway.server.relay")

# The watchdog looks at the limits at least this often (sooner when a deadline is nearer).
LIMITS_CHECK_SECONDS = 1.0
# How often a side that reached another node tries to find its session's home.
HOME_ATTEMPTS = 3
# The messages that carry a session's data, numbered in order by their sender.
STREAM_DATA = frozenset({MessageType.INPUT_STREAM_DATA, MessageType.OUTPUT_STREAM_DATA})


def now_utc() -> datetime:
    return datetime.now(UTC)


def decoded(frame: bytes) -> AgentMessage | None:
    try:
        return decode(frame)
    except ProtocolError:
        return None  # not ours to judge: the other end reads it as it is


def acknowledged_output(frame: bytes) -> int | None:
    """The sequence number of the agent's output that ``frame``, an acknowledge message
    from a client, acknowledges; None for anything else."""
    message = decoded(frame)
    if message is None:
        return None
    try:
        ack = Acknowledge.from_json(message.payload)
    except ProtocolError:
        return None
    return ack.sequence_number if ack.message_type == MessageType.OUTPUT_STREAM_DATA else None


def acknowledgement(message_id: uuid.UUID, sequence_number: int) -> bytes:
    """The relay's acknowledgement of the agent's output ``sequence_number``, given on
    behalf of a client that already has it.

    The official agent resends only its oldest unacknowledged message, and AWS's plugin
    drops a resend of a message it has processed without acknowledging it again. So when
    the agent misses the plugin's acknowledgement, it resends that message until the
    session ends, and never again a later message lost with a node: the session stalls
    for good. It misses one when a node dies with it in flight, and on a fast path (a
    loopback) when it comes back before the agent has recorded the message as awaiting
    acknowledgement (it sends first, then records)."""
    ack = Acknowledge(MessageType.OUTPUT_STREAM_DATA, message_id, sequence_number)
    return AgentMessage(
        message_type=MessageType.ACKNOWLEDGE,
        created_date=int(time.time() * 1000),
        flags=Flags.ACK,
        payload=ack.to_json(),
    ).encode()


def set_nodelay(request: web.Request) -> None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Socket(Protocol):
    """A side's connection as the relay uses it: its WebSocket here, or the stream that
    carries it from the node its WebSocket reached (cluster/links.py StreamEnd)."""

    @property
    def closed(self) -> bool: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


# A session's two ends, as this relay holds them.
Pairing = SocketPairing[Socket]
Side = SocketSide[Socket]


async def frames_of(ws: web.WebSocketResponse) -> AsyncIterator[bytes]:
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            yield message.data
        elif message.type == WSMsgType.ERROR:
            return


class Relay:
    def __init__(self, state: ServerState, links: PeerLinks) -> None:
        self.state = state
        self.me = state.config.node_name
        self.links = links
        links.handle("attach", self._attach_from_edge)
        links.handle("end_session", self._end_from_peer)
        self.pairings: dict[str, Pairing] = {}
        # Told when this node becomes the home of a session (it pairs its ends).
        self.on_home: list[Callable[[str], Awaitable[None]]] = []
        # The sides this node carries to another node's home, and the sides another node
        # carries here: closed with the rest at shutdown.
        self._edges: set[web.WebSocketResponse] = set()
        self._carried: set[asyncio.Task[None]] = set()
        self.limits = SessionLimits()
        self.on_expired: list[Callable[[str, str], Awaitable[None]]] = []
        self.supervisor = Supervisor()
        self._hang_ups: set[asyncio.Task[None]] = set()
        # Whether a session's agent is away, for a client that joins meanwhile (presence.py).
        self.away_notice: Callable[[str], AgentPresence | None] = lambda target: None

    def set_limits(
        self,
        session_id: str,
        idle_minutes: int | None,
        max_minutes: int | None,
        age: float = 0.0,
        *,
        join_deadline: float | None = None,
        joined: bool = False,
        last_activity: float | None = None,
    ) -> None:
        """Watch a session's limits; ``age`` is how long ago (seconds) it started,
        ``join_deadline`` (wall-clock seconds) when its client must have joined by, and
        ``last_activity`` (wall-clock seconds) what a restart found saved."""
        minute = self.state.config.preference_minute
        now = time.time()
        self.limits.watch(
            session_id,
            now,
            idle=idle_minutes * minute if idle_minutes else None,
            max_duration=max_minutes * minute if max_minutes else None,
            started=now - age,
            join_deadline=join_deadline,
            joined=joined,
            last_activity=last_activity,
        )
        self.supervisor.start("session limits watchdog", self._enforce_limits)
        self.supervisor.start("session activity saver", self._save_activity)

    async def _enforce_limits(self) -> float:
        """End sessions that idled or ran past their limit, as the service does (agent.md
        §4.6); the seconds until the next look. A session stays watched until its end is
        recorded, so a failure (the database is away) is retried."""
        now = time.time()
        for session_id, reason in self.limits.expired(now):
            # Only a handler knows whether the limit is this node's to enforce (the client
            # may have joined through another node), so it says when one ends a session.
            log.debug("session limit due", extra={"session_id": session_id, "reason": reason})
            for handler in self.on_expired:
                await handler(session_id, reason)
            watch = self.limits.get(session_id)
            if watch is not None and watch.reason(now) is not None:
                self.limits.forget(session_id)  # ended (a handler may find it must not be)
        wait = self.limits.seconds_to_next(time.time())
        return LIMITS_CHECK_SECONDS if wait is None else min(wait, LIMITS_CHECK_SECONDS)

    async def _save_activity(self) -> float:
        """Save the sessions' last activity, at a low rate (not per frame): after a
        restart, the idle timeout counts from it. The seconds until the next save."""
        unsaved = self.limits.unsaved_activity()
        if unsaved:
            async with self.state.db() as db, db.begin():
                for session_id, moment in unsaved.items():
                    await db.execute(
                        update(Session)
                        .where(Session.session_id == session_id)
                        .values(last_activity=datetime.fromtimestamp(moment, UTC))
                    )
            self.limits.saved(unsaved)
        return self.state.config.activity_save_seconds

    # --- REST: the agent asks for its data-channel token ----------------------------------

    async def create_data_channel(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        try:
            body = await read_body(request, CHANNEL_REQUEST_BYTES, self.state.config.body_timeout)
            session = await self._session_for_agent(request, body, session_id)
            async with self.state.db() as db, db.begin():
                token = await tokens.issue(
                    db, session.session_id, "agent", now_utc(), self.state.config.token_lifetime
                )
        except AwsError as error:
            return xml_error(error)
        return token_response(token)

    async def _session_for_agent(
        self, request: web.Request, body: bytes, session_id: str
    ) -> Session:
        principal = await authenticate(self.state, request, body, SIGNING_NAME, now_utc())
        async with self.state.db() as db:
            session = await db.get(Session, session_id)
        if (
            principal.kind is not PrincipalKind.NODE
            or session is None
            or session.target != principal.name
        ):
            raise AccessDeniedException(
                f"User: {principal.arn} is not authorized to perform: "
                f"ssmmessages:OpenDataChannel on resource: {session_id}"
            )
        if session.status not in JOINABLE:
            # The official agent stops retrying only on this exact phrase.
            raise AccessDeniedException(f"Session is already terminated: {session_id}")
        return session

    # --- the WebSocket ------------------------------------------------------------------

    async def data_channel(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        signed_by_node = None
        if request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            # Agents always sign the upgrade; some clients do too (as ssmmessages).
            # pyssm-client sends "Authorization: Bearer <token>" instead; the token in the
            # opening frame is what counts for clients, so that header is ignored.
            try:
                principal = await authenticate(self.state, request, b"", SIGNING_NAME, now_utc())
            except AwsError as error:
                return xml_error(error)
            if principal.kind is PrincipalKind.NODE:
                signed_by_node = principal.name
        set_nodelay(request)
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=MAX_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        admitted = await self._admit(ws, session_id, signed_by_node)
        if admitted is None:
            return ws
        role, target, home = admitted
        features = parse_features(request.headers.get(FEATURES_HEADER, ""))
        if home.node == self.me:
            await self._serve(ws, frames_of(ws), session_id, target, role, features)
        else:
            self._edges.add(ws)
            try:
                await self._serve_at(home, ws, session_id, target, role, features)
            finally:
                self._edges.discard(ws)
        return ws

    async def _admit(
        self, ws: web.WebSocketResponse, session_id: str, signed_by_node: str | None
    ) -> tuple[str, str, Home] | None:
        """Read the opening text frame and redeem its token: the role it was issued for,
        the session's target, and its home (this node, when it had none)."""
        try:
            # One deadline for the opening frame: aiohttp answers pings inside receive()
            # and would start a receive timeout afresh after each one.
            async with asyncio.timeout(self.state.config.channel_open_seconds):
                first = await ws.receive()
            if first.type != WSMsgType.TEXT:
                raise ProtocolError("the first frame must be the OpenDataChannel text message")
            opening = OpenDataChannel.from_json(first.data)
        except (ProtocolError, TimeoutError) as exc:
            log.warning(
                "data channel refused",
                extra={"session_id": session_id, "reason": str(exc) or "timeout"},
            )
            await ws.close(message=b"expected OpenDataChannel")
            return None
        role = role_of(opening.client_instance_id)
        async with self.state.db() as db, db.begin():
            session = await db.get(Session, session_id)
            valid = (
                session is not None
                and may_join(session.status, role, session.target, signed_by_node)
                and await tokens.redeem(db, opening.token, session_id, role, now_utc())
            )
            if valid and session is not None:
                if role == "client" and not session.client_joined:
                    session.client_joined = now_utc()  # other servers' join deadlines read it
                home = await settle(db, session_id, self.me)
        if not valid or session is None:
            log.warning(
                "data channel token refused", extra={"session_id": session_id, "role": role}
            )
            await ws.close(message=b"the token is not valid for this session")
            return None
        if role == "client":
            self.limits.joined(session_id)
        return role, session.target, home

    async def _serve_at(
        self,
        home: Home,
        ws: web.WebSocketResponse,
        session_id: str,
        target: str,
        role: str,
        features: frozenset[str],
    ) -> None:
        """Carry a side to its session's home on another node; take the session over when
        that node cannot be reached (it died: the other side will come here, or to a node
        that finds this one its home)."""
        for _ in range(HOME_ATTEMPTS):
            if home.node == self.me:
                await self._serve(ws, frames_of(ws), session_id, target, role, features)
                return
            try:
                link = await self.links.link_to(home.node)
            except PeerUnreachable as exc:
                log.info(
                    "session home unreachable: taking the session over",
                    extra={"session_id": session_id, "home": home.node, "error": str(exc)},
                )
                if await take_over(self.state.db, session_id, home, self.me):
                    home = Home(self.me, home.epoch + 1)
                    continue
            else:
                end = link.open_stream()
                try:
                    answer = await link.request(
                        "attach",
                        stream=end.id,
                        session=session_id,
                        role=role,
                        features=sorted(features),
                    )
                except PeerUnreachable:
                    answer = {"ok": False, "reason": "no answer"}
                if answer.get("ok") is True:
                    log.info(
                        "data channel carried to its home",
                        extra={"session_id": session_id, "role": role, "home": home.node},
                    )
                    await carry(ws, end)
                    return
                end.finish(int(WSCloseCode.GOING_AWAY), b"refused")
                if answer.get("reason") == "ended":
                    break
            found = await home_of(self.state.db, session_id)
            if found is None:
                break
            home = found
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"no node could pair the session")

    async def _attach_from_edge(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        """A peer carries a side here: this node must be the session's home."""
        session_id, role = message.get("session"), message.get("role")
        stream, features = message.get("stream"), message.get("features")
        if not isinstance(session_id, str) or role not in ROLES or not isinstance(stream, int):
            return {"ok": False, "reason": "bad attach"}
        async with self.state.db() as db:
            row = await db.get(Session, session_id)
        if row is None or row.status not in JOINABLE:
            return {"ok": False, "reason": "ended"}
        if row.relay_node != self.me:
            return {"ok": False, "reason": "not its home"}
        end = link.accept_stream(stream)
        wanted = frozenset(f for f in features or () if isinstance(f, str))
        task = asyncio.create_task(
            self._serve(end, end.frames(), session_id, row.target, str(role), wanted)
        )
        self._carried.add(task)
        task.add_done_callback(self._carried_done)
        return {"ok": True}

    def _carried_done(self, task: asyncio.Task[None]) -> None:
        self._carried.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relaying a carried side failed", exc_info=task.exception())

    async def _pair(self, session_id: str, target: str) -> Pairing:
        pairing = self.pairings.get(session_id)
        if pairing is None:
            pairing = self.pairings[session_id] = Pairing(session_id, target)
            for told in self.on_home:
                try:
                    await told(session_id)
                except Exception:
                    log.exception("a session home handler failed", extra={"session_id": session_id})
        return pairing

    async def _serve(
        self,
        sock: Socket,
        frames: AsyncIterator[bytes],
        session_id: str,
        target: str,
        role: str,
        features: frozenset[str],
    ) -> None:
        pairing = await self._pair(session_id, target)
        pairing.side(role).features = features
        attached = pairing.attach(role, sock)
        if attached.previous is not None:
            await attached.previous.close(message=b"replaced by a newer connection")
        for frame in attached.waiting:
            await sock.send_bytes(frame)
        if attached.rejoined:
            await self._nudge(pairing.peer(role))
        if role == "client" and (notice := self.away_notice(pairing.target)) is not None:
            await self._tell(pairing, notice)
        if attached.both_connected:
            await self._set_status(session_id, "Connected")
        log.info(
            "data channel open",
            extra={"session_id": session_id, "target": pairing.target, "role": role},
        )
        try:
            async for frame in frames:
                await self._forward(pairing, role, frame)
        finally:
            pairing.detach(role, sock)
            log.info("data channel closed", extra={"session_id": session_id, "role": role})

    async def _forward(self, pairing: Pairing, role: str, frame: bytes) -> None:
        if role == "agent" and not for_client(frame):
            return  # agent_session_state and the like are for the service, not the client
        sender, kind = pairing.side(role), peek_message_type(frame)
        number = peek_sequence_number(frame) if kind in STREAM_DATA else None
        if number is None or sender.sends_new_data(number):
            self.limits.activity(pairing.session_id, time.time())
            if number is not None and role == "agent":
                sender.new_message_passed(number)
        elif role == "agent" and (message := decoded(frame)) is not None:
            # A resend is not activity (after a missed acknowledgement the official agent
            # resends one message until the session ends).
            if sender.was_acknowledged(number):
                await self._acknowledge(sender, message.message_id, number)
                return  # the client has it
            if AGENT_PRESENCE_FEATURE not in pairing.client.features:
                # Not Hatchway's client (which acknowledges a duplicate again): perhaps
                # AWS's plugin, whose silence will tell that it had this one.
                sender.resend_passed(number, message.message_id)
        if kind == MessageType.ACKNOWLEDGE and role == "client":
            acknowledged = acknowledged_output(frame)
            if acknowledged is not None:
                pairing.agent.peer_acknowledged(acknowledged)
                for skipped, message_id in pairing.agent.peer_skipped(acknowledged):
                    pairing.agent.peer_acknowledged(skipped)
                    await self._acknowledge(pairing.agent, message_id, skipped)
        peer = pairing.peer(role)
        target = peer.ws
        if target is None or target.closed:
            peer.queue(frame)
            return
        try:
            await target.send_bytes(frame)  # waits while the peer's socket is full
        except (ConnectionError, RuntimeError):
            peer.queue(frame)

    async def _nudge(self, peer: Side) -> None:
        """A side came back: what its peer sent it while it was away may be lost (in a
        dropped socket, past the bounded queue, in a node that died). ``start_publication``
        makes a Hatchway end resend everything unacked at once (data-channel.md §3.7),
        instead of one message per timeout; other ends take it as a no-op."""
        if peer.ws is None or peer.ws.closed:
            return
        message = AgentMessage(
            message_type=MessageType.START_PUBLICATION,
            created_date=int(now_utc().timestamp() * 1000),
            message_id=uuid.uuid4(),
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            await peer.ws.send_bytes(message.encode())

    async def _acknowledge(self, agent: Side, message_id: uuid.UUID, sequence_number: int) -> None:
        """Acknowledge the agent's output for a client that has it (see acknowledgement)."""
        ws = agent.ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(acknowledgement(message_id, sequence_number))

    async def tell_clients(self, target: str, presence: AgentPresence) -> None:
        """Tell the connected clients of ``target``'s sessions that asked for it (the
        message is Hatchway's own: other clients would log it as invalid)."""
        for pairing in list(self.pairings.values()):
            if pairing.target == target:
                await self._tell(pairing, presence)

    async def _tell(self, pairing: Pairing, presence: AgentPresence) -> None:
        ws = pairing.client.ws
        if AGENT_PRESENCE_FEATURE in pairing.client.features and ws is not None and not ws.closed:
            message = AgentMessage(
                message_type=MessageType.HATCHWAY_AGENT_PRESENCE,
                created_date=int(now_utc().timestamp() * 1000),
                payload=presence.to_json(),
            )
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(message.encode())

    async def _set_status(self, session_id: str, status: str) -> None:
        async with self.state.db() as db, db.begin():
            row = await db.get(Session, session_id)
            if row is not None and row.status in JOINABLE:
                row.status = status

    # --- ending -------------------------------------------------------------------------

    async def close_session(self, session_id: str, output: str, *, here_only: bool = False) -> None:
        """Tell the client the session is over (with the agent's output), then hang up;
        through its home when that is another node."""
        self.limits.forget(session_id)
        pairing = self.pairings.pop(session_id, None)
        if pairing is None:
            if not here_only:
                await self._close_at_home(session_id, output)
            return
        pairing.closed = True
        closed = ChannelClosed(
            session_id=session_id,
            message_id=uuid.uuid4(),
            created_date=now_utc().isoformat(),
            destination_id=pairing.target,
            output=output,
        )
        message = AgentMessage(
            message_type=MessageType.CHANNEL_CLOSED,
            created_date=int(now_utc().timestamp() * 1000),
            flags=Flags.ACK,
            payload=closed.to_json(),
        ).encode()
        for side in (pairing.client, pairing.agent):
            if side.ws is not None and not side.ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await side.ws.send_bytes(message)
                    if side is pairing.client:
                        await side.ws.close()
                    else:
                        self._hang_up_later(side.ws)

    async def _close_at_home(self, session_id: str, output: str) -> None:
        home = await home_of(self.state.db, session_id)
        if home is None or home.node == self.me:
            return
        try:
            await self.links.request(home.node, "end_session", session=session_id, output=output)
        except PeerUnreachable as exc:
            # Its sides find the session over when they come back (their tokens are refused).
            log.info(
                "could not tell a session's home that it ended",
                extra={"session_id": session_id, "home": home.node, "error": str(exc)},
            )

    async def _end_from_peer(self, link: Link, message: dict[str, Any]) -> dict[str, Any]:
        session_id, output = message.get("session"), message.get("output", "")
        if not isinstance(session_id, str) or not isinstance(output, str):
            return {"ok": False, "reason": "bad end_session"}
        await self.close_session(session_id, output, here_only=True)
        return {"ok": True}

    async def check_homes(self) -> None:
        """Let go of the sessions another node took over (it found this one unreachable):
        their sides reconnect and find the new home."""
        ids = list(self.pairings)
        if not ids:
            return
        async with self.state.db() as db:
            rows = await db.execute(
                select(Session.session_id, Session.relay_node).where(Session.session_id.in_(ids))
            )
            moved = [session_id for session_id, node in rows if node != self.me]
        for session_id in moved:
            pairing = self.pairings.pop(session_id, None)
            if pairing is None:
                continue
            log.info("session moved to another node", extra={"session_id": session_id})
            for side in (pairing.client, pairing.agent):
                if side.ws is not None and not side.ws.closed:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await side.ws.close(code=WSCloseCode.GOING_AWAY, message=b"session moved")

    def _hang_up_later(self, ws: Socket) -> None:
        """Leave the closing of an agent's data channel to the agent, within a bound.

        The official agent (amazon-ssm-agent, agent/session/communicator/websocketchannel.go,
        the listener in ``WebSocketChannel.Open``) treats any read error, whatever the close
        code, as a lost connection and calls ``OnError``, which reconnects through
        ``getDataChannelToken`` in ``DataChannel.SetWebSocket`` (datachannel.go) until
        CreateDataChannel answers "Session is already terminated"
        (``getNonRetryableDataChannelErrors``). It stops quietly only when it closed the
        socket itself first: on channel_closed (``handleChannelClosedMessage``) it cancels
        the session, and the session plugin (sessionplugin.go, ``Execute``) then waits up to
        2 s for its acks (``PrepareToCloseChannel``) and calls ``DataChannel.Close``."""
        task = asyncio.create_task(self._hang_up(ws))
        self._hang_ups.add(task)
        task.add_done_callback(self._hang_up_done)

    async def _hang_up(self, ws: Socket) -> None:
        await asyncio.sleep(self.state.config.agent_hangup_seconds)
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close(message=b"session ended")

    def _hang_up_done(self, task: asyncio.Task[None]) -> None:
        self._hang_ups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing an agent's data channel failed", exc_info=task.exception())

    async def close_all(self) -> None:
        """Hang up every socket with 1001 (going away) and no channel_closed: the sessions
        live on, and their clients and agents reconnect to the server that comes next."""
        for task in list(self._hang_ups):
            task.cancel()
        await self.supervisor.stop()
        try:
            await self._save_activity()  # what the last periodic save did not catch
        except Exception as exc:  # the database may be what is going away
            log.warning("could not save the sessions' last activity", extra={"error": str(exc)})
        sockets: list[Socket] = list(self._edges)
        for pairing in list(self.pairings.values()):
            sockets += [side.ws for side in (pairing.client, pairing.agent) if side.ws is not None]
        for sock in sockets:
            if not sock.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sock.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
