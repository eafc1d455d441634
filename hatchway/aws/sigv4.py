"""AWS Signature Version 4 verification for requests signed in the Authorization header.

Sans-I/O: the caller hands in the request as received and the current time, and gets
back either the parsed credential scope or an ``AwsError`` whose message matches what
AWS would say. Looking up the secret for an access key id is the caller's business,
which is why checking is split in two: ``parse`` says whose key signed the request,
``verify`` checks the signature with that key's secret.

botocore's signer is the reference for every canonicalisation choice; the tests sign
with it and verify here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from .errors import (
    MISSING_AUTH_MESSAGE,
    SIGNATURE_MISMATCH_MESSAGE,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SCOPE_TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
MAX_CLOCK_SKEW = timedelta(minutes=15)

# RFC 3986 unreserved characters besides letters and digits, which quote() never escapes.
_UNRESERVED = "-._~"
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
_SCOPE_DATE = re.compile(r"\d{8}", re.ASCII)
_SIGNATURE = re.compile(r"[0-9a-f]{64}", re.ASCII)
# Either of these in the query means the client meant to presign.
_PRESIGN_QUERY_NAMES = frozenset({b"X-Amz-Algorithm", b"X-Amz-Signature"})

_MISSING_DATE_MESSAGE = (
    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
)
_PRESIGNED_MESSAGE = (
    "Presigned URLs are not supported: sign the request with an Authorization header, "
    "not X-Amz-Signature in the query string."
)
_TWO_MECHANISMS_MESSAGE = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
    "or the Authorization header should be specified."
)


@dataclass(frozen=True)
class Request:
    """An HTTP request exactly as it arrived, before any decoding."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Authorization:
    """What the Authorization header (and the date and token headers) claim."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    security_token: str | None


def parse(request: Request) -> Authorization:
    """Read the Authorization header and its companions without checking the signature."""
    headers = _headers_by_name(request.headers)
    presigned = _is_presigned(request.query)
    authorization = headers.get("authorization", [])
    if not authorization:
        if presigned:
            raise IncompleteSignatureException(_PRESIGNED_MESSAGE)
        raise MissingAuthenticationTokenException(MISSING_AUTH_MESSAGE)
    if len(authorization) > 1:
        raise IncompleteSignatureException("The request has more than one Authorization header.")
    if presigned:
        # The canonical query leaves X-Amz-Signature out, so tolerating it next to a
        # header signature would let anyone append it to a captured request unnoticed.
        raise IncompleteSignatureException(_TWO_MECHANISMS_MESSAGE)

    fields = _authorization_fields(authorization[0])
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    request_date = _request_date(headers)
    if request_date is None:
        problems.append(_MISSING_DATE_MESSAGE)
    if problems or request_date is None:
        raise IncompleteSignatureException(" ".join(problems))

    access_key_id, date, region, service = _credential_scope(fields["Credential"])
    signature = fields["Signature"]
    if not _SIGNATURE.fullmatch(signature):
        raise IncompleteSignatureException("Signature must be 64 lowercase hexadecimal characters.")
    return Authorization(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=_signed_header_names(fields["SignedHeaders"]),
        signature=signature,
        amz_date=request_date,
        security_token=_single(headers, "x-amz-security-token"),
    )


def verify(
    request: Request,
    auth: Authorization,
    secret_key: str,
    *,
    now: datetime,
    region: str,
    service: str | Collection[str],
    allow_unsigned_payload: bool = False,
) -> None:
    """Raise unless ``auth`` is a valid signature of ``request`` by ``secret_key`` at ``now``.

    ``service`` names the signing name (or names) this endpoint answers to. The body is
    always covered unless ``allow_unsigned_payload`` is set: no SDK sends
    UNSIGNED-PAYLOAD to a JSON service, and accepting it would let a captured request be
    replayed with any body.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    services = (service,) if isinstance(service, str) else tuple(sorted(service))
    if not services:
        raise ValueError("at least one expected service is required")

    if auth.service not in services:
        expected = " or ".join(f"'{name}'" for name in services)
        raise InvalidSignatureException(
            f"Credential should be scoped to correct service: {expected}. "
        )
    if auth.region != region:
        raise InvalidSignatureException("Credential should be scoped to a valid region. ")
    if auth.date != auth.amz_date[:8]:
        raise InvalidSignatureException(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{auth.amz_date[:8]}', from '{auth.amz_date}'."
        )
    _check_clock(_parse_amz_date(auth.amz_date), now)
    if "host" not in auth.signed_headers:
        raise IncompleteSignatureException(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )

    headers = _headers_by_name(request.headers)
    _require_signed_headers(auth.signed_headers, headers)
    _refuse_unsigned_amz_headers(auth.signed_headers, headers)
    payload_hash = _payload_hash(headers, request.body, allow_unsigned_payload)
    canonical = canonical_request(request, auth.signed_headers, payload_hash)
    expected_signature = _signature(secret_key, auth, canonical)
    if not hmac.compare_digest(expected_signature.encode(), _utf8(auth.signature)):
        raise InvalidSignatureException(SIGNATURE_MISMATCH_MESSAGE)


def canonical_request(request: Request, signed_headers: Sequence[str], payload_hash: str) -> str:
    """The SigV4 canonical request; worth printing when a client's signature does not match.

    Raises InvalidSignatureException if a header named in ``signed_headers`` is absent.
    """
    headers = _headers_by_name(request.headers)
    _require_signed_headers(signed_headers, headers)
    header_lines = [
        f"{name}:{','.join(_trim_all(value) for value in headers[name])}\n"
        for name in signed_headers
    ]
    return "\n".join(
        (
            request.method,
            canonical_uri(request.path),
            canonical_query_string(request.query),
            "".join(header_lines),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def canonical_uri(raw_path: str) -> str:
    """The path with dot segments and empty segments removed, then percent-encoded again.

    Every service but S3 signs the already-encoded path encoded a second time, so an
    encoded ``%3A`` becomes ``%253A``. Empty segments go because AWS drops them too.
    """
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    path = "/" + "/".join(segments)
    if segments and raw_path.endswith("/"):
        path += "/"
    return quote(_utf8(path), safe="/" + _UNRESERVED)


def canonical_query_string(raw_query: str) -> str:
    """Query parameters decoded, re-encoded per RFC 3986, and sorted by name then value.

    A ``+`` on the wire is a space: that is how botocore (through urlencode) sends a
    space it signed as ``%20``, and how a literal ``+`` it signed as ``%2B`` never
    appears unencoded.
    """
    pairs = []
    for field in raw_query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        raw_name = _form_decode(name)
        if raw_name == b"X-Amz-Signature":
            continue
        pairs.append((_uri_encode(raw_name), _uri_encode(_form_decode(value))))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


def _authorization_fields(header: str) -> dict[str, str]:
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported Authorization algorithm '{algorithm}': only {ALGORITHM} is supported."
        )
    fields: dict[str, str] = {}
    # SDKs differ on ", " versus "," between the parameters; both are accepted.
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        name, equals, value = part.partition("=")
        if not equals:
            raise IncompleteSignatureException(
                f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization header."
            )
        if name in fields:
            raise IncompleteSignatureException(
                f"Authorization header has more than one '{name}' parameter."
            )
        fields[name] = value
    return fields


def _credential_scope(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5:
        raise IncompleteSignatureException(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'"
        )
    access_key_id, date, region, service, terminator = parts
    if terminator != SCOPE_TERMINATOR:
        raise IncompleteSignatureException(
            f"Credential should be scoped with a valid terminator: '{SCOPE_TERMINATOR}', "
            f"not '{terminator}'. "
        )
    if not _SCOPE_DATE.fullmatch(date):
        raise IncompleteSignatureException(
            f"Credential scope date must be in yyyyMMdd format, got '{date}'."
        )
    return access_key_id, date, region, service


def _signed_header_names(value: str) -> tuple[str, ...]:
    names = tuple(name.lower() for name in value.split(";"))
    if not all(names):
        raise IncompleteSignatureException(f"SignedHeaders has an empty header name: '{value}'.")
    return names


def _request_date(headers: dict[str, list[str]]) -> str | None:
    """The signing time in ISO 8601 basic format, or None if the request carries none."""
    # X-Amz-Date wins over Date, as at AWS: proxies may rewrite Date.
    amz_date = _single(headers, "x-amz-date")
    if amz_date is not None:
        _parse_amz_date(amz_date)
        return amz_date
    http_date = _single(headers, "date")
    if http_date is not None:
        return _amz_date_from_http_date(http_date)
    return None


def _parse_amz_date(value: str) -> datetime:
    try:
        if not _AMZ_DATE.fullmatch(value):
            raise ValueError(value)
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise IncompleteSignatureException(
            f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601"
        ) from None


def _amz_date_from_http_date(value: str) -> str:
    if _AMZ_DATE.fullmatch(value):
        _parse_amz_date(value)
        return value
    try:
        parsed = parsedate_to_datetime(value)
        # botocore writes Date with "-0000", which RFC 2822 calls "UTC, origin unknown".
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return _format_amz_date(parsed.astimezone(UTC))
    except (TypeError, ValueError, OverflowError):
        raise IncompleteSignatureException(
            f"Date header must be an HTTP date or ISO-8601 'basic format'. Got '{value}'."
        ) from None


def _format_amz_date(moment: datetime) -> str:
    # strftime's %Y does not zero-pad years before 1000 on every platform.
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"T{moment.hour:02d}{moment.minute:02d}{moment.second:02d}Z"
    )


def _check_clock(signed_at: datetime, now: datetime) -> None:
    # AWS reports times to the second, so the window is judged to the second as well.
    now = now.astimezone(UTC).replace(microsecond=0)
    signed = _format_amz_date(signed_at)
    if signed_at < now - MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {signed} is now earlier than "
            f"{_format_amz_date(now - MAX_CLOCK_SKEW)} ({_format_amz_date(now)} - 15 min.)"
        )
    if signed_at > now + MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature not yet current: {signed} is still later than "
            f"{_format_amz_date(now + MAX_CLOCK_SKEW)} ({_format_amz_date(now)} + 15 min.)"
        )


def _payload_hash(headers: dict[str, list[str]], body: bytes, allow_unsigned: bool) -> str:
    body_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        return body_hash
    if len(declared) > 1:
        raise IncompleteSignatureException(
            "The request has more than one 'x-amz-content-sha256' header."
        )
    # When the header is sent, the signature covers its value rather than the body, so the
    # body is only covered once the two are known to agree.
    value = declared[0]
    if value == UNSIGNED_PAYLOAD:
        if allow_unsigned:
            return value
        raise InvalidSignatureException(
            "UNSIGNED-PAYLOAD is not accepted by this service: sign the request body."
        )
    if value != body_hash:
        raise InvalidSignatureException(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return value


def _string_to_sign(auth: Authorization, canonical: str) -> str:
    scope = f"{auth.date}/{auth.region}/{auth.service}/{SCOPE_TERMINATOR}"
    return "\n".join(
        (ALGORITHM, auth.amz_date, scope, hashlib.sha256(_utf8(canonical)).hexdigest())
    )


def _signature(secret_key: str, auth: Authorization, canonical: str) -> str:
    string_to_sign = _string_to_sign(auth, canonical)
    key = _utf8("AWS4" + secret_key)
    for part in (auth.date, auth.region, auth.service, SCOPE_TERMINATOR):
        key = hmac.new(key, _utf8(part), hashlib.sha256).digest()
    return hmac.new(key, _utf8(string_to_sign), hashlib.sha256).hexdigest()


def _headers_by_name(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    return by_name


def _require_signed_headers(signed_headers: Sequence[str], headers: dict[str, list[str]]) -> None:
    for name in signed_headers:
        if name not in headers:
            raise InvalidSignatureException(
                f"Header '{name}' is listed in SignedHeaders but is absent from the request."
            )


def _refuse_unsigned_amz_headers(
    signed_headers: Sequence[str], headers: dict[str, list[str]]
) -> None:
    # X-Amz-Target picks the operation and X-Amz-Content-Sha256 stands in for the body, so
    # an x-amz-* header outside the signature could be swapped on a captured request.
    # Every SDK signs all of them (botocore leaves out only headers such as User-Agent).
    unsigned = sorted(
        name for name in headers if name.startswith("x-amz-") and name not in signed_headers
    )
    if unsigned:
        raise IncompleteSignatureException(
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned)
        )


def _single(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    if values is None:
        return None
    if len(values) > 1:
        # Two values would leave it to chance which one the signature was meant for.
        raise IncompleteSignatureException(f"The request has more than one '{name}' header.")
    return values[0]


def _is_presigned(raw_query: str) -> bool:
    names = (_form_decode(field.partition("=")[0]) for field in raw_query.split("&"))
    return not _PRESIGN_QUERY_NAMES.isdisjoint(names)


def _trim_all(value: str) -> str:
    # Runs of any whitespace, not only spaces, collapse: botocore splits on str.isspace().
    return " ".join(value.split())


def _form_decode(text: str) -> bytes:
    return unquote_to_bytes(_utf8(text).replace(b"+", b" "))


def _uri_encode(raw: bytes) -> str:
    return quote(raw, safe=_UNRESERVED)


def _utf8(text: str) -> bytes:
    # Header bytes that are not UTF-8 reach us as surrogate escapes (aiohttp decodes that
    # way); turning them back into the original bytes keeps the hash over what was sent.
    # Any other lone surrogate cannot match a signature, but must not crash the check.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Signed:
    """A request signed by ``sign``: the headers to send, and the two texts that went into
    the signature (worth showing when a server computes a different one)."""

    headers: tuple[tuple[str, str], ...]
    canonical_request: str
    string_to_sign: str


def sign(
    request: Request,
    *,
    access_key_id: str,
    secret_key: str,
    region: str,
    service: str,
    now: datetime,
    security_token: str | None = None,
) -> Signed:
    """Sign ``request`` (whose headers must include Host) at ``now``, as botocore does: the
    request's own headers, X-Amz-Date and any security token are signed, and the body is
    covered by its SHA-256."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    amz_date = _format_amz_date(now.astimezone(UTC))
    headers = [*request.headers, ("X-Amz-Date", amz_date)]
    if security_token:
        headers.append(("X-Amz-Security-Token", security_token))
    if "host" not in _headers_by_name(headers):
        raise ValueError("the request needs a Host header to be signed")
    names = tuple(sorted({name.lower() for name, _ in headers}))
    payload_hash = hashlib.sha256(request.body).hexdigest()
    unsigned = Request(request.method, request.path, request.query, headers, request.body)
    canonical = canonical_request(unsigned, names, payload_hash)
    auth = Authorization(
        access_key_id=access_key_id,
        date=amz_date[:8],
        region=region,
        service=service,
        signed_headers=names,
        signature="",
        amz_date=amz_date,
        security_token=security_token,
    )
    scope = f"{auth.date}/{region}/{service}/{SCOPE_TERMINATOR}"
    string_to_sign = _string_to_sign(auth, canonical)
    signature = _signature(secret_key, auth, canonical)
    authorization = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return Signed(
        headers=(*headers, ("Authorization", authorization)),
        canonical_request=canonical,
        string_to_sign=string_to_sign,
    )
