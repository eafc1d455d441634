"""``hatchway agent run``: the control channel, health pings, and the sessions it starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..protocol import AgentMessage, MessageType, ProtocolError
from .api import ServiceError, call_json, http_session
from .control import AGENT_VERSION, ControlChannel
from .diagnose import diagnose
from .identity import Identity
from .platform_info import instance_information
from .session import SessionTask, SessionWorker
from .users import DEFAULT_SESSION_USER, session_user_for

log = logging.getLogger("hatchway.agent")

ACK_WAIT = 1.0
COMPLETE_ATTEMPTS = 3


@dataclass(frozen=True)
class AgentConfig:
    home: Path
    health_interval: float = 300.0  # as the official agent: every 5 minutes
    ca_bundle: str | None = None
    kms_url: str | None = None  # KMS for session keys; the server's own endpoint when None
    session_user: str | None = DEFAULT_SESSION_USER  # without RunAs; None: the agent's own


class Agent:
    def __init__(self, config: AgentConfig, identity: Identity) -> None:
        self.config = config
        self.identity = identity
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.session_workers: dict[str, SessionWorker] = {}
        self.acks: dict[str, asyncio.Event] = {}
        self.http: aiohttp.ClientSession | None = None
        self.control: ControlChannel | None = None
        self.extra = {"target": identity.instance_id}
        self.background: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        async with http_session(self.config.ca_bundle) as http:
            self.http = http
            self.control = ControlChannel(
                self.identity, http, self.on_message, greeting=self.live_sessions
            )
            health = asyncio.create_task(self.keep_reporting_health(stop))
            try:
                await self.control.run_forever(stop)
            finally:
                health.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await health
                for task in list(self.workers.values()):
                    task.cancel()
                await asyncio.gather(*self.workers.values(), return_exceptions=True)

    def live_sessions(self) -> AgentMessage:
        """The sessions this agent still runs, sent each time its control channel opens:
        the server ends the others (it cannot know an agent restarted otherwise)."""
        return AgentMessage(
            message_type=MessageType.HATCHWAY_LIVE_SESSIONS,
            created_date=int(time.time() * 1000),
            message_id=uuid.uuid4(),
            payload=json.dumps({"SessionIds": sorted(self.workers)}).encode(),
        )

    async def keep_reporting_health(self, stop: asyncio.Event) -> None:
        assert self.http is not None
        info = instance_information(self.identity.instance_id, AGENT_VERSION)
        while not stop.is_set():
            try:
                await call_json(
                    self.http,
                    self.identity.server_url,
                    "UpdateInstanceInformation",
                    info,
                    self.identity,
                )
            except (ServiceError, aiohttp.ClientError, OSError) as exc:
                log.warning("health ping failed", extra={**self.extra, "error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.health_interval)

    # --- control messages ---------------------------------------------------------------

    async def on_message(self, message: AgentMessage) -> None:
        kind = message.message_type
        if kind == MessageType.INTERACTIVE_SHELL:
            self.start_session(message)
        elif kind == MessageType.CHANNEL_CLOSED:
            self.end_session(message)
        elif kind == MessageType.HATCHWAY_DIAGNOSE:
            task = asyncio.create_task(self.answer_diagnose(message))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        elif kind == MessageType.AGENT_TASK_ACKNOWLEDGE:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                ack = json.loads(message.payload)
                event = self.acks.get(str(ack["MessageId"]))
                if event is not None:
                    event.set()

    async def answer_diagnose(self, message: AgentMessage) -> None:
        """doctor's questions (agent/diagnose.py), answered on the control channel."""
        try:
            request = json.loads(message.payload)
            request_id = str(request["RequestId"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a bad diagnose request", extra=self.extra)
            return
        assert self.http is not None
        results = await diagnose(
            request,
            home=self.config.home,
            identity=self.identity,
            http=self.http,
            kms_url=self.config.kms_url or self.identity.server_url,
        )
        log.info("answered a diagnose request", extra={**self.extra, "checks": len(results)})
        reply = AgentMessage(
            message_type=MessageType.HATCHWAY_DIAGNOSE_RESULT,
            created_date=int(time.time() * 1000),
            message_id=uuid.uuid4(),
            payload=json.dumps({"RequestId": request_id, "Results": results}).encode(),
        )
        if self.control is not None:
            await self.control.send(reply)

    def start_session(self, message: AgentMessage) -> None:
        try:
            task = SessionTask.from_message(message)
        except ProtocolError as exc:
            # As the official agent: log and drop; the service times out on its own.
            log.error("could not start a session", extra={**self.extra, "error": str(exc)})
            return
        if task.session_id in self.workers:
            log.warning(
                "duplicate session request dropped",
                extra={**self.extra, "session_id": task.session_id},
            )
            return
        assert self.http is not None
        kms_url = self.config.kms_url or self.identity.server_url
        worker = SessionWorker(
            self.identity,
            self.http,
            task,
            self,
            AGENT_VERSION,
            kms_url,
            session_user_for(self.config.session_user),
        )
        self.session_workers[task.session_id] = worker
        runner = asyncio.create_task(worker.run())
        self.workers[task.session_id] = runner
        runner.add_done_callback(lambda _: self._forget(task.session_id))
        log.info(
            "session requested",
            extra={**self.extra, "session_id": task.session_id, "document": task.document_name},
        )

    def _forget(self, session_id: str) -> None:
        self.workers.pop(session_id, None)
        self.session_workers.pop(session_id, None)

    def end_session(self, message: AgentMessage) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            session_id = str(json.loads(message.payload)["SessionId"])
            worker = self.session_workers.get(session_id)
            if worker is not None:
                log.info(
                    "session closed by the service", extra={**self.extra, "session_id": session_id}
                )
                worker.finish("Success", "")

    async def report_complete(self, session_id: str, status: str, output: str) -> None:
        """agent_task_complete, sent up to three times until the service acknowledges it."""
        payload = {
            "SchemaVersion": 1,
            "TaskId": session_id,
            "Topic": "agent_task_complete",
            "FinalTaskStatus": status,
            "IsRoutingFailure": False,
            "AwsAccountId": "",
            "InstanceId": self.identity.instance_id,
            "Output": output[:2500],
            "S3Bucket": "",
            "S3UrlSuffix": "",
            "CwlGroup": "",
            "CwlStream": "",
            "RetryNumber": 1,
        }
        message = AgentMessage(
            message_type=MessageType.AGENT_TASK_COMPLETE,
            created_date=int(time.time() * 1000),
            message_id=uuid.uuid4(),
            payload=json.dumps(payload).encode(),
        )
        acked = self.acks[str(message.message_id)] = asyncio.Event()
        try:
            for _ in range(COMPLETE_ATTEMPTS):
                if self.control is not None and await self.control.send(message):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(acked.wait(), ACK_WAIT)
                        return
                else:
                    await asyncio.sleep(ACK_WAIT)
            log.warning(
                "session result not acknowledged", extra={**self.extra, "session_id": session_id}
            )
        finally:
            self.acks.pop(str(message.message_id), None)
