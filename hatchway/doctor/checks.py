"""The checks, layer by layer: configuration and credentials, DNS, TCP, the proxy, TLS,
HTTP, SigV4, the WebSocket upgrade and the target. Each check names the ones it needs; when
one of those did not pass, it is skipped, so each branch stops at its first failure."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509

from ..aws import sigv4
from ..aws.explain import mask_key_id
from . import tls
from .net import NetError, Response, connect, resolve, send_request, unverified_chain
from .results import CAUSES, Result, Status, failed, passed, skipped, warned

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROBE_SESSION = "hatchway-doctor-probe"
DATA_CHANNEL_PATH = "/v1/data-channel/"
USER_AGENT = "hatchway-doctor"
# Signatures are valid for 15 minutes either way; warn well before that.
SKEW_WARNING = dt.timedelta(minutes=5)
_SIGV4_SKEW_WORDS = ("Signature expired", "Signature not yet current")
_SCOPE_WORDS = ("scoped to a valid region", "scoped to correct service")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_key: str
    token: str | None = None
    source: str = "given explicitly"

    def __repr__(self) -> str:
        return f"Credentials({mask_key_id(self.access_key_id)}, from {self.source})"


@dataclass(frozen=True)
class Settings:
    endpoint_url: str
    region: str | None  # None: not configured; the server's /healthz may say it
    endpoint_source: str = "--endpoint-url"
    # False when nothing named an endpoint and endpoint_url is AWS's default for the region.
    endpoint_configured: bool = True
    credentials: Credentials | None = None
    credentials_problem: str = "no credentials were found in the chain"
    target: str | None = None
    document_name: str | None = None  # the session document whose RunAs and KMS to check
    proxy_url: str | None = None
    proxy_source: str = "--proxy"
    proxy_headers: tuple[tuple[str, str], ...] = ()  # Proxy-Authorization from the environment
    ca_bundle: str | None = None
    timeout: float = 5.0
    clock: Callable[[], dt.datetime] = utc_now
    debug: Callable[[str], None] | None = None
    # The signed call that proves the credentials (a read-only one the principal may make).
    probe_target: str = "AmazonSSM.DescribeInstanceInformation"
    probe_params: Mapping[str, Any] | None = None
    # The agent's own checks: a KMS endpoint to try, and no target or user-side checks.
    kms_url: str | None = None
    node_side: bool = False
    # Only the network and the WebSocket: how the StreamUrl's host is checked when it is
    # not the endpoint's.
    stream_probe: bool = False
    data_channel_path: str = DATA_CHANNEL_PATH


@dataclass
class _Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


# The host names of AWS's own Systems Manager and KMS endpoints (regional, FIPS, dual-stack,
# China, and VPC interface endpoints, which carry the service's label). A Hatchway server on
# EC2 (ec2-….compute.amazonaws.com) or behind an ELB (….elb.amazonaws.com) is not one.
_AWS_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
_AWS_SERVICE_LABELS = frozenset(
    {"ssm", "ssm-fips", "ssmmessages", "ec2messages", "kms", "kms-fips", "iam", "sts"}
)


def is_aws_endpoint(host: str) -> bool:
    host = host.lower().rstrip(".")
    if not host.endswith(_AWS_SUFFIXES):
        return False
    return any(label in _AWS_SERVICE_LABELS for label in host.split("."))


def parse_endpoint(url: str) -> _Endpoint:
    """Raise ValueError, with a sentence a user can act on, for an unusable URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host name")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return _Endpoint(parts.scheme, parts.hostname, port)


@dataclass
class Checkup:
    """One run of doctor's checks. ``run`` returns every result, in order."""

    settings: Settings
    results: dict[str, Result] = field(default_factory=dict)
    _addresses: list[tuple[str, int]] = field(default_factory=list)
    _proxy_headers: list[tuple[str, str]] = field(default_factory=list)
    _describe: tuple[Response, Any] | None = None
    _data_channel_url: str | None = None  # where the server says StreamUrls point
    _stream_path: str | None = None
    _healthz_region: str | None = None  # the region the server's /healthz names

    def __post_init__(self) -> None:
        self.region = self.settings.region
        self.endpoint = parse_endpoint(self.settings.endpoint_url)
        self.proxy = parse_endpoint(self.settings.proxy_url) if self.settings.proxy_url else None
        self._proxy_headers = list(self.settings.proxy_headers)
        if self.settings.proxy_url and not self._proxy_headers:
            parts = urlsplit(self.settings.proxy_url)
            if parts.username:
                user, password = unquote(parts.username), unquote(parts.password or "")
                secret = f"{user}:{password}".encode()
                self._proxy_headers = [
                    ("Proxy-Authorization", "Basic " + base64.b64encode(secret).decode())
                ]

    # --- plan ---------------------------------------------------------------------------

    def plan(self) -> list[tuple[str, Callable[[], Result | list[Result]], tuple[str, ...]]]:
        https = self.endpoint.scheme == "https"
        tunnel = https and self.proxy is not None
        steps: list[tuple[str, Callable[[], Result | list[Result]], tuple[str, ...]]] = [
            ("config.endpoint", self.check_endpoint, ()),
            ("config.credentials", self.check_credentials, ()),
            ("dns", self.check_dns, ("config.endpoint",)),
            ("tcp", self.check_tcp, ("dns",)),
        ]
        last = "tcp"
        if tunnel:
            steps.append(("proxy.connect", self.check_proxy_connect, (last,)))
            last = "proxy.connect"
        if https:
            steps += [
                ("tls.handshake", self.check_tls_handshake, (last,)),
                ("tls.certificate", self.check_tls_certificate, ("tls.handshake",)),
                ("tls.chain", self.check_tls_chain, ("tls.handshake",)),
            ]
            last = "tls.certificate"
        if self.settings.stream_probe:
            return [*steps, ("websocket.upgrade", self.check_websocket, (last,))]
        steps.append(("http.endpoint", self.check_http, (last,)))
        signing: tuple[str, ...] = ("http.endpoint", "config.credentials")
        if self.region is None:
            # After http.endpoint, whose /healthz may name it; run even if that failed.
            steps.append(("config.region", self.check_region, ()))
            signing += ("config.region",)
        steps += [
            ("auth.signature", self.check_signature, signing),
            ("websocket.upgrade", self.check_websocket, ("http.endpoint",)),
        ]
        if self.settings.kms_url:
            steps.append(("kms.reachable", self.check_kms, ("auth.signature",)))
        if not self.settings.node_side:
            steps += [
                ("target.registered", self.check_target_registered, ("auth.signature",)),
                ("target.online", self.check_target_online, ("target.registered",)),
                ("agent", self.check_agent, ("target.online",)),
            ]
        return steps

    def run(self) -> list[Result]:
        for check_id, check, needs in self.plan():
            blocker = next(
                (
                    n
                    for n in needs
                    if n in self.results and self.results[n].status in (Status.FAIL, Status.SKIP)
                ),
                None,
            )
            if blocker is not None:
                self.results[check_id] = skipped(check_id, f"{blocker} did not pass")
                continue
            if check_id.startswith(("target.", "agent")) and not self.settings.target:
                self.results[check_id] = skipped(check_id, "no --target given")
                continue
            try:
                outcome = check()
            except NetError as exc:
                outcome = failed(check_id, exc.cause, exc.evidence)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # Whatever a layer did that no check foresaw: said, not a traceback.
                outcome = failed(check_id, "upstream.error", f"{type(exc).__name__}: {exc}")
            for result in outcome if isinstance(outcome, list) else [outcome]:
                self.results[result.id] = result
        return list(self.results.values())

    def _log(self, text: str) -> None:
        if self.settings.debug is not None:
            self.settings.debug(text)

    # --- configuration ------------------------------------------------------------------

    def check_endpoint(self) -> Result:
        s = self.settings
        if not s.endpoint_configured:
            return failed(
                "config.endpoint",
                "endpoint.aws",
                "no endpoint is set (--endpoint-url, AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL, the "
                f"profile's endpoint_url), so clients would call AWS's own {s.endpoint_url}: "
                "that is AWS Systems Manager, not a Hatchway server. Nothing was sent to it.",
            )
        if is_aws_endpoint(self.endpoint.host):
            return failed(
                "config.endpoint",
                "endpoint.aws",
                f"{s.endpoint_url} (from {s.endpoint_source}) is AWS's own endpoint, not a "
                "Hatchway server. Nothing was sent to it.",
            )
        via = f"; through the proxy {_hide_password(s.proxy_url)} ({s.proxy_source})"
        region = f"region {s.region}" if s.region else "no region set (the server may say it)"
        return passed(
            "config.endpoint",
            f"{s.endpoint_url} (from {s.endpoint_source}), {region}"
            + (via if s.proxy_url else "; no proxy"),
        )

    def check_region(self) -> Result:
        """Only when no region was configured: the one the server's /healthz names."""
        if self._healthz_region:
            self.region = self._healthz_region
            return passed(
                "config.region",
                f"{self.region}, as the server's /healthz says (no --region, AWS_DEFAULT_REGION "
                "or profile region was set)",
            )
        why = {
            Status.PASS: "and the server's /healthz does not name one",
            None: "and the server was not asked",
        }.get(
            self.results["http.endpoint"].status if "http.endpoint" in self.results else None,
            "and the endpoint did not answer as a Hatchway server, so could not say",
        )
        return failed(
            "config.region",
            "region.unknown",
            f"no region in --region, AWS_DEFAULT_REGION or the profile, {why}",
        )

    def check_credentials(self) -> Result:
        creds = self.settings.credentials
        if creds is None:
            return failed(
                "config.credentials", "auth.no_credentials", self.settings.credentials_problem
            )
        token = ", with a session token" if creds.token else ""
        return passed(
            "config.credentials",
            f"access key {mask_key_id(creds.access_key_id)} from {creds.source}{token}",
        )

    # --- network ------------------------------------------------------------------------

    @property
    def _first_hop(self) -> _Endpoint:
        return self.proxy or self.endpoint

    def check_dns(self) -> Result:
        hop = self._first_hop
        self._log(f"DNS: looking up {hop.host}")
        self._addresses = resolve(hop.host, hop.port, self.settings.timeout)
        shown = ", ".join(address for address, _ in self._addresses[:4])
        what = "the proxy " if self.proxy else ""
        return passed("dns", f"{what}{hop.host} resolves to {shown}")

    def check_tcp(self) -> Result:
        hop = self._first_hop
        self._log(f"TCP: connecting to {hop.host} port {hop.port}")
        with contextlib.closing(connect(self._addresses, self.settings.timeout)) as sock:
            peer = sock.getpeername()
        what = "the proxy at " if self.proxy else ""
        return passed("tcp", f"connected to {what}{peer[0]}:{peer[1]}")

    def _tunnel(self, sock: socket.socket) -> Response:
        target = f"{self.endpoint.host}:{self.endpoint.port}"
        self._log(f"proxy: CONNECT {target}")
        headers = [("Host", target), ("User-Agent", USER_AGENT), *self._proxy_headers]
        response = send_request(sock, "CONNECT", target, headers, head_only=True)
        self._log(f"proxy: {response.status_line}")
        return response

    def check_proxy_connect(self) -> Result:
        target = f"{self.endpoint.host}:{self.endpoint.port}"
        with contextlib.closing(connect(self._addresses, self.settings.timeout)) as sock:
            response = self._tunnel(sock)
            if not 200 <= response.status < 300:
                response.body = _drain(sock, response)
        if 200 <= response.status < 300:
            return passed("proxy.connect", f"CONNECT {target}: {response.status_line}")
        evidence = f"CONNECT {target}: the proxy answered {response.status_line}"
        if response.status == 407:
            scheme = response.headers.get("proxy-authenticate", "")
            sent = "credentials it refused" if self._proxy_headers else "no credentials"
            return failed(
                "proxy.connect",
                "proxy.auth_required",
                f"{evidence} ({scheme or 'no scheme named'}); doctor sent {sent}",
            )
        if response.status in (502, 503, 504):
            return failed(
                "proxy.connect", "upstream.error", f"{evidence}: it cannot reach the server"
            )
        return failed("proxy.connect", "proxy.connect_refused", evidence)

    def _connect(self) -> socket.socket:
        """A connection to the endpoint (tunnelled through the proxy for https)."""
        sock = connect(self._addresses, self.settings.timeout)
        if self.proxy is not None and self.endpoint.scheme == "https":
            try:
                response = self._tunnel(sock)
            except BaseException:
                sock.close()
                raise
            if not 200 <= response.status < 300:
                sock.close()
                raise NetError("proxy.connect_refused", f"CONNECT: {response.status_line}")
        return sock

    # --- TLS ----------------------------------------------------------------------------

    def _verifying_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_bundle)

    @property
    def _bundle_words(self) -> str:
        if self.settings.ca_bundle:
            return f"the CA bundle {self.settings.ca_bundle}"
        return "this machine's trusted CAs"

    def check_tls_handshake(self) -> Result:
        host = self.endpoint.host
        self._log(f"TLS: handshake with {host}, trusting {self._bundle_words}")
        sock = self._connect()
        try:
            with self._verifying_context().wrap_socket(sock, server_hostname=host) as tls_sock:
                self._tls = (tls_sock.version(), tls_sock.cipher(), unverified_chain(tls_sock))
                self._tls_error: ssl.SSLCertVerificationError | None = None
        except ssl.SSLCertVerificationError as exc:
            # The handshake got as far as the certificate: read it without verifying.
            self._tls_error = exc
            try:
                self._tls = self._unverified_handshake()
            except (OSError, NetError):
                self._tls = (None, None, [])
        except ssl.SSLError as exc:
            return self._handshake_failure(exc)
        except (TimeoutError, OSError) as exc:
            words = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return failed(
                "tls.handshake",
                "tls.protocol_version",
                f"no TLS handshake with {host}: {words} (does that port speak TLS?)",
            )
        finally:
            sock.close()
        version, cipher, chain = self._tls
        self._log(f"TLS: {version}, cipher {cipher[0] if cipher else '?'}, {len(chain)} certs")
        if not version or not cipher:
            return passed("tls.handshake", "the handshake got as far as the certificate")
        return passed("tls.handshake", f"{version} with {cipher[0]}")

    def _unverified_handshake(
        self, permissive: bool = False
    ) -> tuple[str | None, tuple[str, str, int] | None, list[x509.Certificate]]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if permissive:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                context.set_ciphers("ALL:@SECLEVEL=0")
        sock = self._connect()
        try:
            with context.wrap_socket(sock, server_hostname=self.endpoint.host) as tls_sock:
                return tls_sock.version(), tls_sock.cipher(), unverified_chain(tls_sock)
        finally:
            sock.close()

    def _handshake_failure(self, exc: ssl.SSLError) -> Result:
        reason = exc.reason or ""
        host = self.endpoint.host
        if reason == "WRONG_VERSION_NUMBER":
            return failed(
                "tls.handshake",
                "tls.protocol_version",
                f"{host} did not answer in TLS (OpenSSL: wrong version number): it may "
                "speak plain HTTP on that port",
                "Use the scheme the server speaks: http:// for a server without "
                "--tls-cert, https:// otherwise.",
            )
        try:
            version, cipher, _ = self._unverified_handshake(permissive=True)
        except (ssl.SSLError, OSError, NetError):
            version, cipher = None, None
        offered = f"{version} with {cipher[0]}" if version and cipher else None
        if version in ("SSLv3", "TLSv1", "TLSv1.1") or "PROTOCOL" in reason:
            found = f": the server speaks only {offered}" if offered else ""
            return failed(
                "tls.handshake",
                "tls.protocol_version",
                f"no TLS version in common with {host} (OpenSSL: {reason}){found}; this "
                "client speaks TLS 1.2 and 1.3",
            )
        if offered or "CIPHER" in reason or "HANDSHAKE_FAILURE" in reason:
            found = f": the server agrees only to {offered}" if offered else ""
            return failed(
                "tls.handshake",
                "tls.no_shared_cipher",
                f"no cipher in common with {host} (OpenSSL: {reason}){found}",
            )
        return failed("tls.handshake", "tls.protocol_version", f"TLS with {host} failed: {exc}")

    def check_tls_certificate(self) -> Result:
        _, _, chain = self._tls
        if self._tls_error is not None:
            cause, evidence = tls.verify_failure(
                self._tls_error.verify_code,
                self._tls_error.verify_message,
                chain,
                self.endpoint.host,
                self.settings.clock(),
                self._bundle_words,
            )
            return failed("tls.certificate", cause, evidence)
        leaf = chain[0] if chain else None
        if leaf is None:
            return passed("tls.certificate", f"verified against {self._bundle_words}")
        return passed(
            "tls.certificate",
            f"{tls.name_of(leaf)} covers {self.endpoint.host}, valid until "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}, issued by "
            f"{leaf.issuer.rfc4514_string()} (trusted by {self._bundle_words})",
        )

    def check_tls_chain(self) -> Result:
        _, _, chain = self._tls
        problem = tls.chain_order_problem(chain)
        if problem is not None:
            return warned(
                "tls.chain",
                "tls.chain_out_of_order",
                f"{problem}; OpenSSL and Go put it right, stricter clients refuse it",
            )
        return passed("tls.chain", f"{len(chain)} certificate(s), each followed by its issuer")

    # --- HTTP ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        head_only: bool = False,
    ) -> tuple[Response, socket.socket]:
        """One request on a fresh connection; the caller closes the socket it gets back."""
        sock = self._connect()
        try:
            if self.endpoint.scheme == "https":
                sock = self._verifying_context().wrap_socket(
                    sock, server_hostname=self.endpoint.host
                )
            target = path
            if self.proxy is not None and self.endpoint.scheme == "http":
                # A plain-HTTP request through a proxy names the whole URL.
                target = f"http://{self.endpoint.authority}{path}"
                headers = [*headers, *self._proxy_headers]
            self._log(f"HTTP: {method} {target}")
            response = send_request(sock, method, target, headers, body, head_only=head_only)
            self._log(f"HTTP: {response.status_line} {response.body_text(2000)}".rstrip())
            return response, sock
        except ssl.SSLError as exc:
            sock.close()
            raise NetError("upstream.error", f"TLS failed: {exc}") from None
        except BaseException:
            sock.close()
            raise

    def _proxied_plain_http(self) -> bool:
        return self.proxy is not None and self.endpoint.scheme == "http"

    def check_http(self) -> Result:
        headers = [
            ("Host", self.endpoint.authority),
            ("User-Agent", USER_AGENT),
            ("Connection", "close"),
        ]
        response, sock = self._request("GET", "/healthz", headers)
        sock.close()
        evidence = f"GET /healthz: {response.status_line}"
        if self._proxied_plain_http():
            if response.status == 407:
                return failed(
                    "http.endpoint", "proxy.auth_required", f"the proxy answered {evidence}"
                )
            if response.status in (403, 405) and "x-amzn-requestid" not in response.headers:
                return failed(
                    "http.endpoint",
                    "proxy.connect_refused",
                    f"the proxy refused to forward it: {evidence} {response.body_text()}".rstrip(),
                )
        if response.status >= 500:
            server = response.headers.get("server")
            by = f" (Server: {server})" if server else ""
            return failed(
                "http.endpoint",
                "upstream.error",
                f"{evidence}{by}: {response.body_text() or 'no body'}",
            )
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = json.loads(response.body)
        if not (
            response.status == 200
            and isinstance(answer, dict)
            and answer.get("status") == "ok"
            and "dataChannelUrl" in answer
        ):
            # Not Hatchway's answer: a web server, or a gateway that does not lead to it.
            server = response.headers.get("server")
            body = " ".join(response.body_text(600).split())[:200] or "no body"
            return failed(
                "http.endpoint",
                "endpoint.not_hatchway",
                f"{evidence}{f' (Server: {server})' if server else ''} is not a Hatchway "
                f"server's answer: what answers at {self.endpoint.authority} is not Hatchway. "
                f"It said: {body}",
            )
        if isinstance(answer.get("dataChannelUrl"), str):
            self._data_channel_url = answer["dataChannelUrl"]
        if isinstance(answer.get("region"), str):
            self._healthz_region = answer["region"]
        seen = answer.get("host")
        if isinstance(seen, str) and seen.lower() != self.endpoint.authority.lower():
            # Nothing fails yet, but every signature will: SigV4 signs the Host header.
            return warned(
                "http.endpoint",
                None,
                f"{evidence}, but the server saw Host: {seen} where doctor sent Host: "
                f"{self.endpoint.authority}: something in front rewrites it",
                "Make the proxy in front pass the Host header through unchanged "
                "(nginx: proxy_set_header Host $host): SigV4 signatures cover it.",
            )
        return passed("http.endpoint", evidence)

    # --- SigV4 --------------------------------------------------------------------------

    def _signed_call(
        self, target: str, params: Mapping[str, Any], service: str = "ssm"
    ) -> tuple[Response, Any]:
        creds = self.settings.credentials
        assert creds is not None
        body = json.dumps(dict(params)).encode()
        request = sigv4.Request(
            "POST",
            "/",
            "",
            (
                ("Host", self.endpoint.authority),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", target),
            ),
            body,
        )
        now = self.settings.clock()
        self._sent_at = now
        signed = sigv4.sign(
            request,
            access_key_id=creds.access_key_id,
            secret_key=creds.secret_key,
            region=self.region or "",
            service=service,
            now=now,
            security_token=creds.token,
        )
        self._log(f"SigV4 canonical request:\n{signed.canonical_request}")
        self._log(f"SigV4 string to sign:\n{signed.string_to_sign}")
        headers = [
            (name, value)
            for name, value in signed.headers
            if name.lower() not in ("authorization", "x-amz-security-token")
        ]
        self._log(
            "SigV4: Authorization: AWS4-HMAC-SHA256 Credential="
            f"{mask_key_id(creds.access_key_id)}/{signed.string_to_sign.split(chr(10))[2]}"
        )
        secret_headers = [
            (name, value)
            for name, value in signed.headers
            if name.lower() in ("authorization", "x-amz-security-token")
        ]
        headers += [*secret_headers, ("User-Agent", USER_AGENT), ("Connection", "close")]
        response, sock = self._request("POST", "/", headers, body)
        sock.close()
        try:
            parsed = json.loads(response.body) if response.body else {}
        except ValueError:
            parsed = None
        return response, parsed

    def _describe_params(self) -> dict[str, Any]:
        if self.settings.target:
            return {"Filters": [{"Key": "InstanceIds", "Values": [self.settings.target]}]}
        return {"MaxResults": 5}

    def check_signature(self) -> Result:
        params = self.settings.probe_params
        response, parsed = self._signed_call(
            self.settings.probe_target, self._describe_params() if params is None else params
        )
        self._describe = (response, parsed)
        operation = self.settings.probe_target.split(".")[-1]
        skew = self._clock_skew(response)
        skew_words = ""
        if skew is not None:
            skew_words = (
                f"this machine's clock is {_duration(abs(skew))} "
                f"{'behind' if skew < dt.timedelta(0) else 'ahead of'} the server's Date header"
            )
        code, message = _aws_error(response, parsed)
        evidence = f"{operation}: {response.status_line}"
        if code is None and response.status >= 300:
            by = "upstream.error"
            return failed(
                "auth.signature",
                by,
                f"{evidence} that is not an AWS answer: {response.body_text() or 'no body'}",
            )
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException"):
            key = mask_key_id(self.settings.credentials.access_key_id)  # type: ignore[union-attr]
            return failed(
                "auth.signature", "auth.unknown_access_key", f"{code} for key {key}: {message}"
            )
        if code == "InvalidSignatureException" and any(w in message for w in _SIGV4_SKEW_WORDS):
            return failed(
                "auth.signature",
                "auth.clock_skew",
                f"{message} ({skew_words or 'the server sent no Date header'})",
            )
        if code == "InvalidSignatureException" and any(w in message for w in _SCOPE_WORDS):
            return failed(
                "auth.signature",
                "auth.wrong_scope",
                f"signed for region {self.region} and service ssm; the server says: "
                f"{message.strip()}",
            )
        if code in (
            "InvalidSignatureException",
            "IncompleteSignatureException",
            "MissingAuthenticationTokenException",
            "SignatureDoesNotMatch",
        ):
            return failed("auth.signature", "auth.signature_mismatch", f"{code}: {message}")
        if code == "AccessDeniedException":
            evidence = f"the signature was accepted, but: {message}"
        if skew is not None and abs(skew) > SKEW_WARNING:
            return warned("auth.signature", "auth.clock_skew", f"{evidence}; {skew_words}")
        return passed("auth.signature", f"{evidence} ({skew_words})" if skew_words else evidence)

    def _clock_skew(self, response: Response) -> dt.timedelta | None:
        date = response.headers.get("date")
        if not date:
            return None
        try:
            server_time = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return None
        if server_time.tzinfo is None:
            server_time = server_time.replace(tzinfo=dt.UTC)
        return self._sent_at.replace(microsecond=0) - server_time

    # --- KMS, as the agent reaches it -------------------------------------------------

    def check_kms(self) -> Result:
        """A signed Decrypt of a blob no key opens: any AWS answer but AccessDenied shows
        KMS is reachable and takes the node's signature."""
        assert self.settings.kms_url is not None
        kms = Checkup(
            replace(
                self.settings, endpoint_url=self.settings.kms_url, kms_url=None, region=self.region
            )
        )
        where = self.settings.kms_url
        try:
            kms._addresses = resolve(kms._first_hop.host, kms._first_hop.port, kms.settings.timeout)
            probe = {"CiphertextBlob": base64.b64encode(b"HWK1" + bytes(60)).decode()}
            response, parsed = kms._signed_call("TrentService.Decrypt", probe, service="kms")
        except NetError as exc:
            return failed("kms.reachable", "kms.unreachable", f"KMS at {where}: {exc.evidence}")
        code, message = _aws_error(response, parsed)
        if code == "AccessDeniedException":
            return failed("kms.reachable", "kms.access_denied", message)
        if code in ("UnrecognizedClientException", "InvalidSignatureException"):
            return failed("kms.reachable", "kms.access_denied", f"{code}: {message}")
        if code is None and response.status >= 300:
            return failed(
                "kms.reachable",
                "kms.unreachable",
                f"KMS at {where} answered {response.status_line}, not as KMS",
            )
        return passed(
            "kms.reachable",
            f"KMS at {where} answered a probe Decrypt ({code or response.status_line}): it is "
            "reachable and takes this signature",
        )

    # --- WebSocket ----------------------------------------------------------------------

    def _stream_endpoint(self) -> str | None:
        """The http(s) URL of the StreamUrls' host when it is not the endpoint's."""
        if not self._data_channel_url:
            return None
        parts = urlsplit(self._data_channel_url)
        scheme = {"wss": "https", "ws": "http"}.get(parts.scheme)
        if scheme is None or not parts.hostname:
            return None
        try:
            stream = parse_endpoint(f"{scheme}://{parts.netloc}")
        except ValueError:
            return None
        self._stream_path = parts.path or DATA_CHANNEL_PATH
        mine = (self.endpoint.scheme, self.endpoint.host.lower(), self.endpoint.port)
        if (stream.scheme, stream.host.lower(), stream.port) == mine:
            return None
        return f"{scheme}://{parts.netloc}"

    def check_websocket(self) -> Result | list[Result]:
        stream = self._stream_endpoint()
        if stream is not None:
            return self._check_stream_host(stream)
        return self._upgrade()

    def _check_stream_host(self, url: str) -> list[Result]:
        """StreamUrls name another host (--public-url, or a proxy's X-Forwarded-Host):
        clients open the data channel there, so check the network to it too."""
        probe = Checkup(
            replace(
                self.settings,
                endpoint_url=url,
                region=self.region,
                stream_probe=True,
                data_channel_path=self._stream_path or DATA_CHANNEL_PATH,
            )
        )
        results = [
            passed(
                "stream.host",
                f"StreamUrls point at {self._data_channel_url}, not at the endpoint's host "
                f"{self.endpoint.authority}: that host is checked as well",
            )
        ]
        for result in probe.run():
            if result.id != "websocket.upgrade" and not result.id.startswith("config."):
                result = replace(result, id=f"stream.{result.id}")
            if not result.id.startswith("config."):
                results.append(result)
        return results

    def _upgrade(self) -> Result:
        path = (self._stream_path or self.settings.data_channel_path) + PROBE_SESSION
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            ("Host", self.endpoint.authority),
            ("User-Agent", USER_AGENT),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ]
        response, sock = self._request("GET", path, headers, head_only=True)
        try:
            expected = base64.b64encode(
                hashlib.sha1((key + WEBSOCKET_GUID).encode(), usedforsecurity=False).digest()
            ).decode()
            if response.status == 101 and response.headers.get("sec-websocket-accept") == expected:
                with contextlib.suppress(OSError):
                    sock.sendall(_CLOSE_FRAME)
                self._log("WebSocket: upgrade accepted (101), closed again")
                where = f"{self.endpoint.authority}{path}"
                return passed("websocket.upgrade", f"GET {where}: HTTP 101, upgraded")
            if response.status != 101:
                response.body = _drain(sock, response)
        finally:
            sock.close()
        what = (
            f"GET {path} with Upgrade: websocket got {response.status_line}"
            f"{': ' + response.body_text() if response.body else ''}"
        )
        if response.status == 101:
            what = f"GET {path}: HTTP 101 with a wrong Sec-WebSocket-Accept"
        if self.proxy is not None and self.endpoint.scheme == "http":
            return failed(
                "websocket.upgrade",
                "proxy.websocket_blocked",
                f"through the proxy {_hide_password(self.settings.proxy_url)}: {what}",
            )
        return failed("websocket.upgrade", "websocket.upgrade_failed", what)

    # --- the target ---------------------------------------------------------------------

    def _described_node(self) -> dict[str, Any] | Result:
        assert self._describe is not None
        response, parsed = self._describe
        code, message = _aws_error(response, parsed)
        if code == "AccessDeniedException":
            return failed("target.registered", "auth.access_denied", message)
        if code is not None or not isinstance(parsed, dict):
            return failed(
                "target.registered", "upstream.error", f"{code}: {message}" if code else "no JSON"
            )
        nodes = parsed.get("InstanceInformationList") or []
        for node in nodes:
            if isinstance(node, dict) and node.get("InstanceId") == self.settings.target:
                return node
        return failed(
            "target.registered",
            "target.not_registered",
            f"DescribeInstanceInformation knows no node {self.settings.target!r}",
        )

    def check_target_registered(self) -> Result:
        node = self._described_node()
        if isinstance(node, Result):
            return node
        self._node = node
        details = ", ".join(
            f"{label} {node[key]}"
            for key, label in (
                ("ComputerName", "name"),
                ("IPAddress", "address"),
                ("PlatformName", "platform"),
                ("AgentVersion", "agent"),
            )
            if node.get(key)
        )
        return passed("target.registered", f"{self.settings.target} is registered ({details})")

    def check_target_online(self) -> Result:
        node = self._node
        status = node.get("PingStatus", "unknown")
        last = node.get("LastPingDateTime")
        when = ""
        if isinstance(last, int | float):
            moment = dt.datetime.fromtimestamp(last, dt.UTC)
            ago = self.settings.clock() - moment
            when = f", last ping {moment:%Y-%m-%d %H:%M:%S} UTC ({_duration(ago)} ago)"
        if status == "Online":
            return passed("target.online", f"PingStatus Online{when}")
        return failed(
            "target.online",
            "target.offline",
            f"PingStatus {status}{when}: the agent's control channel is not connected",
        )

    def check_agent(self) -> Result | list[Result]:
        params: dict[str, Any] = {"Target": self.settings.target}
        if self.settings.document_name:
            params["DocumentName"] = self.settings.document_name
        response, parsed = self._signed_call("AmazonSSM.HatchwayDiagnoseInstance", params)
        code, message = _aws_error(response, parsed)
        if code in ("UnknownOperationException", "InvalidAction"):
            return skipped("agent", "the server offers no agent diagnostics (not Hatchway?)")
        if code == "AccessDeniedException":
            return failed("agent", "auth.access_denied", message)
        if code == "TargetNotConnected":
            return failed("agent", "target.offline", message)
        if code is not None or not isinstance(parsed, dict):
            return failed("agent", "upstream.error", f"{code}: {message}" if code else "no JSON")
        results = []
        for item in parsed.get("Results") or []:
            results.append(from_wire(item))
        return results or passed("agent", "nothing to check on the agent")


def from_wire(item: Any) -> Result:
    """A result the server or the agent sent, checked against our vocabulary."""
    if not isinstance(item, dict):
        return warned("agent", None, f"an unreadable result: {item!r}"[:200])
    check_id = str(item.get("id") or "agent")
    try:
        status = Status(str(item.get("status")))
    except ValueError:
        status = Status.WARN
    cause = item.get("cause")
    cause = cause if isinstance(cause, str) and cause in CAUSES else None
    evidence = str(item.get("evidence") or "")
    fix = CAUSES[cause] if cause and status in (Status.FAIL, Status.WARN) else None
    return Result(check_id, status, evidence, cause, fix)


# A masked WebSocket close frame with no payload (RFC 6455: clients mask every frame).
_CLOSE_FRAME = bytes([0x88, 0x80]) + os.urandom(4)


def _drain(sock: socket.socket, response: Response) -> bytes:
    """The body after a head_only read, for evidence (bounded, best effort)."""
    length = response.headers.get("content-length", "")
    data = response.body
    if not length.isdigit() or int(length) == 0:
        return data
    with contextlib.suppress(OSError):
        while len(data) < min(int(length), 4096):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def _aws_error(response: Response, parsed: Any) -> tuple[str | None, str]:
    """(code, message) of an AWS JSON error answer, or (None, "") for anything else."""
    if response.status < 300 or not isinstance(parsed, dict):
        return None, ""
    raw = parsed.get("__type") or response.headers.get("x-amzn-errortype") or ""
    code = str(raw).split("#")[-1].split(":")[0]
    message = parsed.get("message") or parsed.get("Message") or ""
    return (code or None), str(message)


def _duration(delta: dt.timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _hide_password(url: str | None) -> str:
    parts = urlsplit(url or "")
    if parts.password is None:
        return url or ""
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
    return parts._replace(netloc=netloc).geturl()


def run_checks(settings: Settings) -> list[Result]:
    return Checkup(settings).run()
