"""The link between two server nodes of a cluster, sans-I/O.

One WebSocket joins each pair of nodes. It carries, multiplexed:

- *streams*: one side (client or agent) of a session whose WebSocket reached one node
  (the *edge*) while the session's pairing lives on another (its *home*). Data travels as
  binary frames, a 4-byte stream id then the data-channel frame, untouched;
- *calls*: JSON text frames, such as "deliver this session's start to its agent" or
  "this session is over", which name ids only, never secrets.

Both nodes prove they hold the cluster's key before anything else is said (``Handshake``),
and each stream's bytes in flight are bounded by a window of credit (``SendWindow``,
``ReceiveGrants``), so that one slow reader holds back its own stream, never the link.

Nothing here sends, reads a clock or awaits: JSON and bytes in, decisions out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
from dataclasses import dataclass
from typing import Any

from .errors import ProtocolError

# Bytes of one stream's frames that may be in flight (sent but not yet written out by the
# other node) in each direction; the receiver gives credit back after every quarter of it,
# and whenever it has written out everything it was sent.
STREAM_WINDOW = 2 * 1024 * 1024
GRANT_EVERY = STREAM_WINDOW // 4

_STREAM_ID = struct.Struct(">I")
_LABEL = b"hatchway peer link v1"


# --- the handshake ------------------------------------------------------------------------


def _proof(key: bytes, who: str, dialer: str, listener: str, nonces: tuple[str, str]) -> str:
    message = "\n".join((who, dialer, listener, *nonces)).encode()
    return hmac.new(key, _LABEL + b"\n" + message, hashlib.sha256).hexdigest()


@dataclass
class Handshake:
    """Mutual proof of the cluster key, by challenge and answer.

    The listener speaks first with a fresh nonce (``challenge``); the dialer answers with
    its own nonce and a MAC over both, its name and the listener's (``hello``); the
    listener checks it and answers with its own MAC (``welcome``), which the dialer checks.
    A recorded handshake is worth nothing: each side's nonce is new."""

    key: bytes
    me: str

    def challenge(self) -> tuple[str, dict[str, Any]]:
        nonce = secrets.token_hex(16)
        return nonce, {"op": "challenge", "node": self.me, "nonce": nonce}

    def hello(self, challenge: dict[str, Any], expected: str | None) -> tuple[str, dict[str, Any]]:
        """The dialer's answer to the listener's challenge (``expected``: the node it meant
        to reach, when it knows)."""
        listener = _text(challenge, "node")
        listener_nonce = _text(challenge, "nonce")
        if challenge["op"] != "challenge":
            raise ProtocolError("the peer did not open with a challenge")
        if expected is not None and listener != expected:
            raise ProtocolError(f"dialled node {expected} but {listener} answered")
        nonce = secrets.token_hex(16)
        nonces = (listener_nonce, nonce)
        proof = _proof(self.key, "dialer", self.me, listener, nonces)
        return listener, {"op": "hello", "node": self.me, "nonce": nonce, "proof": proof}

    def welcome(self, my_nonce: str, hello: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The listener checks the dialer's hello; the dialer's name and the answer."""
        dialer = _text(hello, "node")
        if hello.get("op") != "hello":
            raise ProtocolError("the peer did not say hello")
        nonces = (my_nonce, _text(hello, "nonce"))
        expected = _proof(self.key, "dialer", dialer, self.me, nonces)
        if not hmac.compare_digest(expected, _text(hello, "proof")):
            raise ProtocolError(f"node {dialer!r} does not hold this cluster's key")
        proof = _proof(self.key, "listener", dialer, self.me, nonces)
        return dialer, {"op": "welcome", "proof": proof}

    def check_welcome(
        self, listener: str, challenge: dict[str, Any], hello: dict[str, Any], welcome: Any
    ) -> None:
        if not isinstance(welcome, dict) or welcome.get("op") != "welcome":
            raise ProtocolError(f"node {listener} refused this node's hello")
        nonces = (_text(challenge, "nonce"), _text(hello, "nonce"))
        expected = _proof(self.key, "listener", self.me, listener, nonces)
        if not hmac.compare_digest(expected, _text(welcome, "proof")):
            raise ProtocolError(f"node {listener!r} does not hold this cluster's key")


def _text(message: Any, name: str) -> str:
    if not isinstance(message, dict):
        raise ProtocolError("a peer handshake message that is not an object")
    value = message.get(name)
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ProtocolError(f"peer message without a valid {name!r}")
    return value


# --- frames -------------------------------------------------------------------------------


def data_frame(stream: int, frame: bytes) -> bytes:
    return _STREAM_ID.pack(stream) + frame


def split_data_frame(data: bytes) -> tuple[int, bytes]:
    if len(data) < _STREAM_ID.size:
        raise ProtocolError("a peer data frame shorter than its stream id")
    (stream,) = _STREAM_ID.unpack_from(data)
    return stream, data[_STREAM_ID.size :]


def call(op: str, **fields: Any) -> str:
    return json.dumps({"op": op, **fields}, separators=(",", ":"))


def parse_call(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"a peer call that is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("a peer call without an op")
    return message


class StreamIds:
    """Stream ids a node opens on one link: odd for the node that dialled, even for the
    one that listened, so the two never pick the same id."""

    def __init__(self, dialled: bool) -> None:
        self._next = 1 if dialled else 2

    def next(self) -> int:
        stream, self._next = self._next, self._next + 2
        if stream > 0xFFFFFFFF:
            raise ProtocolError("this link has run out of stream ids")
        return stream


# --- credit -------------------------------------------------------------------------------


class SendWindow:
    """How much a stream may still send. One frame may always go when nothing is in
    flight, so a frame larger than the window is slow, never stuck."""

    def __init__(self, size: int = STREAM_WINDOW) -> None:
        self.size = size
        self.in_flight = 0

    def may_send(self, length: int) -> bool:
        return self.in_flight == 0 or self.in_flight + length <= self.size

    def sent(self, length: int) -> None:
        self.in_flight += length

    def granted(self, length: int) -> None:
        if length <= 0 or length > self.in_flight:
            raise ProtocolError(f"credit of {length} bytes for {self.in_flight} in flight")
        self.in_flight -= length


class ReceiveGrants:
    """The receiving end of a stream's window: what arrived, what was written out, and
    when to give credit back."""

    def __init__(self, size: int = STREAM_WINDOW, every: int = GRANT_EVERY) -> None:
        self.size = size
        self.every = every
        self.held = 0  # arrived, not yet written out
        self.unreported = 0  # written out, credit not yet given back

    def arrived(self, length: int) -> None:
        """A frame came in; a sender that overruns its window is broken or hostile."""
        if self.held + self.unreported > 0 and self.held + self.unreported + length > self.size:
            raise ProtocolError("the peer sent past its stream's window")
        self.held += length

    def written(self, length: int) -> int:
        """A frame went out to its socket: the credit to give back now (0: not yet)."""
        self.held -= length
        self.unreported += length
        if self.unreported >= self.every or self.held == 0:
            grant, self.unreported = self.unreported, 0
            return grant
        return 0
