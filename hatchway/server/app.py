"""The aiohttp application: the AWS JSON 1.1 endpoint (and IAM's query protocol on the same
``POST /``), health, and the parts that plug in."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import exc as sa_exc

from ..aws import json11
from ..aws import query as query_protocol
from ..aws.errors import AwsError, InternalServerError, ServiceUnavailable
from ..aws.query import FORM_CONTENT_TYPE, QueryRequest
from ..private import private_dir, private_files, touch_private
from .auth import authenticate
from .bodies import read_body
from .bootstrap import bootstrap
from .cluster.links import PEER_PATH, PeerLinks
from .cluster.registry import NodeRegistry
from .config import ServerConfig
from .console import Console
from .forwarded import forwarded
from .iam import admin as iam_admin
from .iam.principals import Principal
from .keystore import Keystore
from .mgs import MessageGateway, gateway_for
from .pagination import Paginator
from .presence import AgentPresenceWatch
from .relay import Relay
from .session_runtime import SessionRuntime
from .ssm.sessions import active_session_preferences, session_preferences
from .state import Call, ServerState
from .storage.db import database_url, make_engine, migrate, session_factory

log = logging.getLogger("hatchway.server")

STATE = web.AppKey("state", ServerState)
CONFIG = web.AppKey("config", ServerConfig)
SERVICES = web.AppKey("services", dict)
REQUEST_ID_HEADER = "x-amzn-RequestId"
REQUEST_ID = web.RequestKey("request_id", str)


def now_utc() -> datetime:
    return datetime.now(UTC)


def base_url(request: web.Request, config: ServerConfig) -> str:
    """The URL the caller used to reach us, honouring a TLS-terminating proxy in front
    (X-Forwarded-Proto, X-Forwarded-Host) and the path prefix it serves us under
    (X-Forwarded-Prefix), when that proxy is one of --trusted-proxies."""
    if config.public_url:
        return config.public_url.rstrip("/")

    def header(name: str) -> str | None:
        return forwarded(request.headers, name, request.remote, config.trusted_proxies)

    scheme = header("X-Forwarded-Proto") or request.scheme
    host = header("X-Forwarded-Host") or request.host
    prefix = (header("X-Forwarded-Prefix") or "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = ""
    return f"{scheme}://{host}{prefix}"


@web.middleware
async def request_ids(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every response carries a request id; every unexpected fault is logged with it."""
    request_id = str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except AwsError as exc:
        response = aws_error_response(exc)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    except Exception as exc:
        if database_away(exc):
            # Retryable (SDKs retry a 503), and said once per request, without a traceback.
            log.warning("the database is unavailable", extra={"request_id": request_id})
            response = aws_error_response(
                ServiceUnavailable(
                    f"The database is unavailable; retry shortly (request id {request_id})"
                )
            )
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        log.exception("unexpected fault", extra={"request_id": request_id, "path": request.path})
        response = aws_error_response(
            InternalServerError(f"An internal error occurred (request id {request_id})")
        )
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def database_away(exc: BaseException) -> bool:
    """Whether a failure means the database cannot be reached (not a bug in a query).
    asyncpg's failures to connect arrive unwrapped: refused, reset, a name that does not
    resolve, a connect timeout."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return isinstance(exc, sa_exc.TimeoutError | ConnectionError | socket.gaierror | TimeoutError)


def aws_error_response(error: AwsError) -> web.Response:
    return web.Response(status=error.status, body=error.body(), headers=error.headers())


async def api(request: web.Request) -> web.Response:
    """``POST /``: one AWS JSON 1.1 call to any of the services on this endpoint.

    Every call is logged with its outcome, the refused ones included."""
    started = time.monotonic()
    who: dict[str, str] = {"principal": "anonymous", "outcome": "ok"}
    who["target"] = request.headers.get("X-Amz-Target") or "(no X-Amz-Target)"
    try:
        if "X-Amz-Target" not in request.headers and request.content_type == FORM_CONTENT_TYPE:
            return await _query_call(request, who)
        return await _call(request, who)
    except AwsError as exc:
        who["outcome"] = exc.code
        raise
    except Exception:
        who["outcome"] = "InternalServerError"
        raise
    finally:
        log.info(
            who["target"],
            extra={
                "request_id": request[REQUEST_ID],
                "principal": who["principal"],
                "outcome": who["outcome"],
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )


async def _call(request: web.Request, who: dict[str, str]) -> web.Response:
    state = request.app[STATE]
    now = now_utc()
    body = await read_body(request, state.config.max_body_bytes, state.config.body_timeout)
    prefix, operation = json11.split_target(request.headers.get("X-Amz-Target"))
    services: dict[str, json11.Service[Call]] = request.app[SERVICES]
    service = services.get(prefix)
    if service is None:
        raise json11.UnknownOperationException(f"Unknown operation {prefix}.{operation}")
    principal = None
    if operation not in service.anonymous:
        principal = await authenticate(state, request, body, service.signing_name, now)
        who["principal"] = principal.arn
    fn = service.lookup(operation)
    params = json11.parse_body(body)
    call = Call(
        state=state,
        principal=principal,
        request_id=request[REQUEST_ID],
        now=now,
        base_url=base_url(request, state.config),
        service=service.signing_name,
    )
    result = await fn(call, params)
    return web.Response(body=json11.dump(result), content_type=json11.CONTENT_TYPE)


async def _query_call(request: web.Request, who: dict[str, str]) -> web.Response:
    """One IAM call in the query protocol; its errors are XML, as IAM's are."""
    state = request.app[STATE]
    now = now_utc()
    try:
        body = await read_body(request, state.config.max_body_bytes, state.config.body_timeout)
        query = QueryRequest(body)
        who["target"] = f"IAM.{query.action}"
        principal = await authenticate(state, request, body, "iam", now)
        who["principal"] = principal.arn
        call = Call(
            state=state,
            principal=principal,
            request_id=request[REQUEST_ID],
            now=now,
            base_url=base_url(request, state.config),
            service="iam",
        )
        result = await iam_admin.dispatch(call, query)
    except AwsError as exc:
        error = iam_admin.query_error_code(exc)
        who["outcome"] = error.code
        return web.Response(
            status=error.status,
            body=query_protocol.error_response(error, request[REQUEST_ID], iam_admin.NAMESPACE),
            content_type=query_protocol.XML_CONTENT_TYPE,
        )
    return web.Response(
        body=query_protocol.response(
            query.action, result, request[REQUEST_ID], iam_admin.NAMESPACE
        ),
        content_type=query_protocol.XML_CONTENT_TYPE,
    )


async def healthz(request: web.Request) -> web.Response:
    from .ssm.sessions import data_channel_base

    # Where StreamUrls will point, so doctor can check that host too; and the Host header
    # as it arrived, so doctor can tell a proxy that rewrites it (SigV4 signs it).
    base = data_channel_base(base_url(request, request.app[STATE].config))
    answer = {"status": "ok", "dataChannelUrl": base, "host": request.host}
    return web.json_response(answer | {"region": request.app[STATE].region})  # doctor reads it


def create_app(config: ServerConfig) -> web.Application:
    from .ec2messages import ec2messages
    from .kms import kms
    from .ssm import ssm

    app = web.Application(middlewares=[request_ids], client_max_size=config.max_body_bytes + 1024)
    app[CONFIG] = config
    app[SERVICES] = {service.target_prefix: service for service in (ssm, ec2messages, kms)}

    async def resources(app: web.Application) -> AsyncIterator[None]:
        private_dir(config.home)
        if not config.database:  # SQLite in the home: 0600 before SQLite first opens it
            touch_private(config.home / "hatchway.db")
            private_files(config.home / "hatchway.db-wal", config.home / "hatchway.db-shm")
        engine = make_engine(database_url(config.home, config.database))
        await migrate(engine)
        db = session_factory(engine)
        keystore = Keystore.load_or_create(config.home, config.master_key)
        settings = await bootstrap(db, keystore, config.home, now_utc())
        app[STATE] = ServerState(
            config=config,
            engine=engine,
            db=db,
            keystore=keystore,
            paginator=Paginator(bytes.fromhex(settings["pagination_secret"])),
            account=settings["account"],
            created_credentials=settings.get("created_credentials"),
        )
        state = app[STATE]
        registry = NodeRegistry(state.db, config.node_name, config.peer_url)
        await registry.start()
        links = PeerLinks(
            config.node_name, keystore.cluster_key, registry, config.channel_open_seconds
        )
        async with gateway_for(state, links) as gateway:
            relay = Relay(state, links)
            runtime = SessionRuntime(
                state, gateway, relay, lambda row: session_preferences(state, row)
            )
            for service in (registry, links, gateway, relay, runtime):
                state.services.add(service)
            registry.on_beat.append(relay.check_homes)
            registry.on_rejoin.append(gateway.reassert_routes)
            presence = AgentPresenceWatch(state, relay)
            gateway.watchers.append(presence)
            await presence.start()
            await runtime.rearm_limits(await active_session_preferences(state))
            try:
                yield
            finally:
                await presence.close()
                await relay.close_all()
                await links.close()
        try:
            await registry.stop()
        except Exception as exc:  # the database may be what is going away
            log.warning("could not leave the cluster's registry", extra={"error": str(exc)})
        await engine.dispose()

    async def hang_up(app: web.Application) -> None:
        # Before aiohttp waits for open handlers: close the WebSockets, or it waits minutes.
        services = app[STATE].services
        await services.get(Relay).close_all()
        await services.get(MessageGateway).close_channels()
        await services.get(PeerLinks).close()

    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(hang_up)
    app.router.add_post("/", api)
    app.router.add_get("/healthz", healthz)

    async def control(request: web.Request) -> web.StreamResponse:
        gateway = request.app[STATE].services.get(MessageGateway)
        if request.method == "POST":
            return await gateway.create_control_channel(request)
        return await gateway.control_channel(request)

    async def data(request: web.Request) -> web.StreamResponse:
        relay = request.app[STATE].services.get(Relay)
        if request.method == "POST":
            return await relay.create_data_channel(request)
        return await relay.data_channel(request)

    def call_for(request: web.Request, principal: Principal, service: str) -> Call:
        state = request.app[STATE]
        return Call(
            state=state,
            principal=principal,
            request_id=request[REQUEST_ID],
            now=now_utc(),
            base_url=base_url(request, state.config),
            service=service,
        )

    Console(lambda app: app[STATE], app[SERVICES], call_for).add_routes(app)
    app.router.add_route("POST", "/v1/control-channel/{instance_id}", control)
    app.router.add_route("GET", "/v1/control-channel/{instance_id}", control)
    app.router.add_route("POST", "/v1/data-channel/{session_id}", data)
    app.router.add_route("GET", "/v1/data-channel/{session_id}", data)

    async def peer(request: web.Request) -> web.StreamResponse:
        return await request.app[STATE].services.get(PeerLinks).accept(request)

    app.router.add_get(PEER_PATH, peer)
    return app
