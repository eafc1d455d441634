"""The web console's backend: sign-in, cookie sessions with CSRF protection, and the few
API calls the page makes, run as the signed-in user.

The page (``hatchway/web/static``) is served under ``/console/``. It signs in with an access
key and secret or with a console password; the server answers with an HttpOnly, SameSite
cookie (Secure over TLS, or behind a trusted proxy that says ``X-Forwarded-Proto: https``) and a
CSRF token that every state-changing request must echo in ``X-CSRF-Token``. Only hashes of
the cookie are stored, so the database alone signs nobody in.

API calls go through ``POST /console/api/call`` with the operation in ``X-Amz-Target``, as
SigV4 clients send it, and run with the same operation functions and policies: a console
user can do exactly what their access key could. The data channel itself is the ordinary
WebSocket at ``StreamUrl``, authenticated by its single-use token.

The WebSocket probe answers one question for a page whose WebSocket would not open: did the
upgrade request reach us, and with its ``Upgrade`` header or without (a proxy that strips
it)? The page opens ``/console/api/ws-probe?probe=ID``, then asks for what we saw of ``ID``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from sqlalchemy import delete, select

from ..aws import json11
from ..aws.errors import (
    AccessDeniedException,
    AwsError,
    ValidationException,
    _error,
)
from .bodies import read_body
from .config import ServerConfig
from .forwarded import Network, client_address, forwarded
from .iam.admin import check_password
from .iam.principals import Principal, PrincipalKind
from .keystore import KeystoreError
from .state import Call, ServerState
from .storage.models import AccessKey, ConsoleSession, User
from .throttle import SignInThrottle

log = logging.getLogger("hatchway.server.console")

COOKIE = "hatchway_console"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=12)
# What the page may call. Everything else stays with SigV4 clients.
OPERATIONS = frozenset(
    {
        "AmazonSSM.DescribeInstanceInformation",
        "AmazonSSM.DescribeSessions",
        "AmazonSSM.StartSession",
        "AmazonSSM.ResumeSession",
        "AmazonSSM.TerminateSession",
        "AmazonSSM.GetConnectionStatus",
        "AmazonSSM.ListDocuments",
        "TrentService.GenerateDataKey",
    }
)
SIGN_IN_FAILED = "The sign-in details are not valid."
PROBES_KEPT = 1024
PROBE_SECONDS = 300.0
WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
# The npm packages the page loads, served from hatchway/web/node_modules (make installs them).
VENDOR_PACKAGES = ("@xterm/", "@noble/hashes/")

NotSignedIn = _error("NotSignedInException", 401)
# Password checks at once; each is about 50 ms of scrypt and 16 MiB of memory.
SCRYPT_SLOTS = 2


class SignInThrottled(AwsError):
    """429 with Retry-After: too many failed sign-ins from this address or for this user."""

    code = "ThrottlingException"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after)}


def _sign_in_name(params: dict[str, Any]) -> str:
    """Whom a sign-in is for, as the throttle counts them: the access key or the user."""
    key_id = params.get("accessKeyId")
    if isinstance(key_id, str) and key_id:
        return "key:" + key_id[:128]
    return "user:" + str(params.get("userName", ""))[:128]


# A valid scrypt string for a password nobody has, so a missing user costs the same time.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "0" * 128

CallFactory = Callable[[web.Request, Principal, str], Call]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _forwarded(request: web.Request, name: str, proxies: Sequence[Network]) -> str | None:
    return forwarded(request.headers, name, request.remote, proxies)


def _cookie_path(request: web.Request, proxies: Sequence[Network]) -> str:
    """The cookie goes only to the console, under the prefix a (trusted) proxy in front
    serves us at, so other applications on the same host never see it."""
    prefix = (_forwarded(request, "X-Forwarded-Prefix", proxies) or "").rstrip("/")
    return (prefix if prefix.startswith("/") else "") + "/console/"


def _scheme(request: web.Request, proxies: Sequence[Network]) -> str:
    return (_forwarded(request, "X-Forwarded-Proto", proxies) or request.scheme).lower()


def _secure(request: web.Request, config: ServerConfig) -> bool:
    """Whether the browser reached us over TLS: directly, through a trusted proxy that says
    so, or at an https ``--public-url``."""
    public_https = (config.public_url or "").lower().startswith("https://")
    return request.secure or public_https or _scheme(request, config.trusted_proxies) == "https"


class Console:
    """The console's routes, bound to the server's state once it exists."""

    def __init__(
        self,
        state_of: Callable[[web.Application], ServerState],
        services: dict[str, json11.Service[Call]],
        call_for: CallFactory,
    ) -> None:
        self._state_of = state_of  # read per request: the state exists once the app starts
        self._services = services
        self._call_for = call_for
        self._probes: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._throttle = SignInThrottle()
        self._scrypt_slots = asyncio.Semaphore(SCRYPT_SLOTS)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/console", self.redirect)
        app.router.add_get("/console/", self.index)
        app.router.add_post("/console/api/sign-in", self.sign_in)
        app.router.add_post("/console/api/sign-out", self.sign_out)
        app.router.add_get("/console/api/me", self.me)
        app.router.add_get("/console/api/nodes", self.nodes)
        app.router.add_post("/console/api/call", self.call)
        app.router.add_get("/console/api/ws-probe", self.ws_probe)
        app.router.add_get("/console/api/ws-probe/{probe}", self.probe_result)
        app.router.add_get("/console/vendor/{path:.+}", self.vendor)
        app.router.add_get("/console/{path:.+}", self.static)

    # --- pages -----------------------------------------------------------------------

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("console/")

    async def index(self, request: web.Request) -> web.StreamResponse:
        page = WEB_ROOT / "static" / "index.html"
        html = page.read_text()
        return web.Response(
            text=html,
            content_type="text/html",
            headers={
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin",
                "Content-Security-Policy": _content_security_policy(html),
            },
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(_inside(WEB_ROOT / "static", request.match_info["path"]))

    async def vendor(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if not path.startswith(VENDOR_PACKAGES):
            raise web.HTTPNotFound()
        modules = WEB_ROOT / "node_modules"
        if not modules.is_dir():
            raise web.HTTPServiceUnavailable(
                text=f"The console's npm packages are not installed: run `npm ci` in {WEB_ROOT} "
                "(make run and make test do it)."
            )
        return self._file(_inside(modules, path))

    @staticmethod
    def _file(path: Path | None) -> web.StreamResponse:
        if path is None or not path.is_file():
            raise web.HTTPNotFound()
        response = web.FileResponse(path)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    # --- sign-in and the cookie session -----------------------------------------------

    async def sign_in(self, request: web.Request) -> web.Response:
        state: ServerState = self._state_of(request.app)
        proxies = state.config.trusted_proxies
        _check_origin(request, state.config)
        params = await _json(request, state.config)
        now = _now()
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), proxies)
        who = _sign_in_name(params)
        # Refused before any secret is checked: a throttled guess costs no scrypt.
        wait = self._throttle.attempt(time.monotonic(), address, who)
        if wait > 0:
            log.info("console sign-in throttled", extra={"who": who, "address": address})
            raise SignInThrottled(
                "Too many failed sign-ins: try again later.", retry_after=math.ceil(wait)
            )
        user = await self._check_credentials(state, params)
        key_id = params.get("accessKeyId") or None
        if user is None:
            log.info("console sign-in refused", extra={"who": who, "address": address})
            raise AccessDeniedException(SIGN_IN_FAILED)
        self._throttle.succeeded(time.monotonic(), address, who)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with state.db() as db, db.begin():
            await db.execute(delete(ConsoleSession).where(ConsoleSession.expires <= now))
            db.add(
                ConsoleSession(
                    token_hash=_hash(token),
                    user_name=user,
                    access_key_id=key_id,
                    csrf_token=csrf,
                    created=now,
                    expires=now + SESSION_LIFETIME,
                )
            )
        log.info("console sign-in", extra={"user": user})
        response = web.json_response(
            {"userName": user, "csrfToken": csrf, "region": state.region, "account": state.account}
        )
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=_cookie_path(request, proxies),
            httponly=True,
            secure=_secure(request, state.config),
            samesite="Strict",
        )
        return response

    async def _check_credentials(self, state: ServerState, params: dict[str, Any]) -> str | None:
        """The user the sign-in names, or None. Both paths do the same work whether the
        name exists or not, and compare secrets in constant time."""
        key_id = params.get("accessKeyId")
        if isinstance(key_id, str) and key_id:
            secret = str(params.get("secretAccessKey") or "")
            async with state.db() as db:
                key = await db.get(AccessKey, key_id)
            if key is None or key.status != "Active" or key.kind != PrincipalKind.USER:
                hmac.compare_digest(secret, secrets.token_urlsafe(30))
                return None
            try:
                stored = state.keystore.open(key.secret_sealed, key.access_key_id).decode()
            except KeystoreError:
                return None
            return key.principal if hmac.compare_digest(secret, stored) else None
        name, password = params.get("userName"), params.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name:
            raise ValidationException(
                "Sign in with accessKeyId and secretAccessKey, or with userName and password"
            )
        async with state.db() as db:
            user = await db.get(User, name)
        stored_hash = user.console_password if user is not None else None
        # check_password runs scrypt even for a missing user, so timing tells nothing. It
        # runs on a worker thread (hashlib releases the GIL), a few at a time, so sign-ins
        # never stall the event loop and every session on it.
        async with self._scrypt_slots:
            valid = await asyncio.to_thread(check_password, password, stored_hash or _DUMMY_HASH)
        return name if valid and stored_hash else None

    async def sign_out(self, request: web.Request) -> web.Response:
        state: ServerState = self._state_of(request.app)
        session = await self._session(request, csrf=True)
        async with state.db() as db, db.begin():
            await db.execute(
                delete(ConsoleSession).where(ConsoleSession.token_hash == session.token_hash)
            )
        response = web.json_response({})
        response.del_cookie(COOKIE, path=_cookie_path(request, state.config.trusted_proxies))
        return response

    async def me(self, request: web.Request) -> web.Response:
        state: ServerState = self._state_of(request.app)
        session = await self._session(request)
        return web.json_response(
            {
                "userName": session.user_name,
                "csrfToken": session.csrf_token,
                "region": state.region,
                "account": state.account,
            }
        )

    async def _session(self, request: web.Request, *, csrf: bool = False) -> ConsoleSession:
        """The signed-in console session; with ``csrf``, the request must also carry its
        CSRF token and come from this origin."""
        state: ServerState = self._state_of(request.app)
        token = request.cookies.get(COOKIE, "")
        session = None
        if token:
            async with state.db() as db:
                session = await db.get(ConsoleSession, _hash(token))
                if session is not None and session.access_key_id is not None:
                    key = await db.get(AccessKey, session.access_key_id)
                    if key is None or key.status != "Active":
                        session = None  # the key it signed in with is gone, and so is this
        if session is None or session.expires <= _now():
            raise NotSignedIn("Sign in to use the console.")
        if csrf:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
                raise AccessDeniedException("The request's CSRF token is missing or wrong.")
            _check_origin(request, state.config)
        return session

    async def _principal(self, state: ServerState, session: ConsoleSession) -> Principal:
        async with state.db() as db:
            user = await db.get(User, session.user_name)
        if user is None:
            raise NotSignedIn("The signed-in user no longer exists.")
        return Principal(
            PrincipalKind.USER,
            user.name,
            state.account,
            access_key_id="console",
            tags={k: str(v) for k, v in user.tags.items()},
        )

    # --- API calls as the signed-in user -----------------------------------------------

    async def call(self, request: web.Request) -> web.Response:
        state: ServerState = self._state_of(request.app)
        session = await self._session(request, csrf=True)
        target = request.headers.get("X-Amz-Target", "")
        if target not in OPERATIONS:
            raise json11.UnknownOperationException(
                f"The console cannot call {target or '(no X-Amz-Target)'}"
            )
        prefix, operation = json11.split_target(target)
        service = self._services[prefix]
        params = await _json(request, state.config)
        principal = await self._principal(state, session)
        call = self._call_for(request, principal, service.signing_name)
        outcome = "ok"
        try:
            result = await service.lookup(operation)(call, params)
        except AwsError as exc:
            outcome = exc.code
            raise
        finally:
            log.info(
                f"console {target}",
                extra={"principal": principal.arn, "outcome": outcome},
            )
        return web.Response(body=json11.dump(result), content_type="application/json")

    async def nodes(self, request: web.Request) -> web.Response:
        """Every node the user may list, with the tags they may read: one request for the
        node list instead of one per node."""
        from .ssm.nodes import describe_instance_information
        from .storage.models import ManagedInstance

        state: ServerState = self._state_of(request.app)
        session = await self._session(request)
        principal = await self._principal(state, session)
        call = self._call_for(request, principal, "ssm")
        nodes: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(1000):  # 50 a page: bounded at 50,000 nodes
            page = await describe_instance_information(call, params)
            nodes.extend(page["InstanceInformationList"])
            if not page.get("NextToken"):
                break
            params = {"NextToken": page["NextToken"]}
        async with state.db() as db:
            rows = await db.scalars(select(ManagedInstance))
            tags = {row.instance_id: dict(row.tags) for row in rows}
        for node in nodes:
            arn = call.instance_arn(node["InstanceId"])
            try:
                await call.authorize("ssm:ListTagsForResource", arn)
            except AccessDeniedException:
                node["Tags"] = {}
            else:
                node["Tags"] = tags.get(node["InstanceId"], {})
        return web.Response(body=json11.dump({"Nodes": nodes}), content_type="application/json")

    # --- the WebSocket probe -----------------------------------------------------------

    async def ws_probe(self, request: web.Request) -> web.StreamResponse:
        probe = request.query.get("probe", "")[:64]
        upgraded = request.headers.get("Upgrade", "").lower() == "websocket"
        if not upgraded:
            # A WebSocket handshake that lost its Upgrade header on the way: a proxy
            # between the browser and us stripped it.
            seen = "stripped" if "Sec-WebSocket-Key" in request.headers else "plain"
            self._remember(probe, seen)
            return web.json_response(
                {"message": "This endpoint needs a WebSocket upgrade."}, status=426
            )
        self._remember(probe, "upgraded")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        await ws.send_str("ok")
        # The page closes at once; one that does not is closed after the open deadline
        # (pings do not extend it), so an anonymous caller cannot hold the socket.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._state_of(request.app).config.channel_open_seconds):
                async for message in ws:
                    if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                        break
        await ws.close()
        return ws

    async def probe_result(self, request: web.Request) -> web.Response:
        self._forget_old()
        seen = self._probes.get(request.match_info["probe"])
        return web.json_response({"seen": seen[1] if seen else "nothing"})

    def _remember(self, probe: str, seen: str) -> None:
        if not probe:
            return
        self._forget_old()
        self._probes[probe] = (time.monotonic(), seen)
        while len(self._probes) > PROBES_KEPT:
            self._probes.popitem(last=False)

    def _forget_old(self) -> None:
        limit = time.monotonic() - PROBE_SECONDS
        while self._probes and next(iter(self._probes.values()))[0] < limit:
            self._probes.popitem(last=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _content_security_policy(html: str) -> str:
    """Scripts from this origin only, plus the page's inline import map by its hash."""
    maps = re.findall(r'<script type="importmap">(.*?)</script>', html, flags=re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in maps
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; connect-src 'self' ws: wss:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'self'; form-action 'self'"
    )


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it stays inside ``root`` (no ``..`` escapes)."""
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def _check_origin(request: web.Request, config: ServerConfig) -> None:
    """A browser sends Origin on every POST; it must be this scheme and host (or those a
    trusted proxy in front says, or those of ``--public-url``): ``https://host`` is another
    origin than ``http://host``. SameSite=Strict already keeps other sites' requests
    cookie-less; this is the second lock."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    proxies = config.trusted_proxies
    host = _forwarded(request, "X-Forwarded-Host", proxies) or request.host
    allowed = {f"{_scheme(request, proxies)}://{host}".lower()}
    if config.public_url:
        public = urlsplit(config.public_url)
        allowed.add(f"{public.scheme}://{public.netloc}".lower())
    if origin.lower() not in allowed:
        raise AccessDeniedException(f"Requests from {origin} are not accepted.")


async def _json(request: web.Request, config: ServerConfig) -> dict[str, Any]:
    """The request's JSON object, or the AWS error for what is wrong with it; read as the
    API reads bodies (whole, bounded in size and in time)."""
    return json11.parse_body(await read_body(request, config.max_body_bytes, config.body_timeout))
