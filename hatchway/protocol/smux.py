"""smux framing (xtaci/smux), which port sessions multiplex TCP connections over.

A frame is an 8-byte header, ``version(1) cmd(1) length(2, LE) stream_id(4, LE)``, then
``length`` bytes of data. Frames ride inside PayloadType 1 stream messages and may be split
across, or packed several to, one message (data-channel.md §5.2), so ``SmuxSession`` takes
a byte stream, not messages.

Version 1 has no flow control. Version 2 adds UPD frames carrying (consumed, window);
the codec knows them so a later version can use them.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass

from .errors import ProtocolError

HEADER = struct.Struct("<BBHI")
HEADER_SIZE = HEADER.size
MAX_FRAME_DATA = 0xFFFF
DEFAULT_MAX_FRAME_SIZE = 32768  # the library default that the reference client uses
UPD_PAYLOAD = struct.Struct("<II")


class Command(enum.IntEnum):
    SYN = 0
    FIN = 1
    PSH = 2
    NOP = 3
    UPD = 4  # version 2 only


@dataclass(frozen=True, slots=True)
class Frame:
    command: Command
    stream_id: int
    data: bytes = b""
    version: int = 1

    def encode(self) -> bytes:
        if len(self.data) > MAX_FRAME_DATA:
            raise ProtocolError(f"smux frame data is {len(self.data)} bytes, over {MAX_FRAME_DATA}")
        if not 0 <= self.stream_id <= 0xFFFFFFFF:
            raise ProtocolError(f"smux stream id {self.stream_id} is out of range")
        return HEADER.pack(self.version, self.command, len(self.data), self.stream_id) + self.data


class FrameReader:
    """Reassembles frames from a byte stream cut at arbitrary points."""

    def __init__(self, versions: frozenset[int] = frozenset({1, 2})) -> None:
        self._buffer = bytearray()
        self._versions = versions

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete. Raises ProtocolError on a bad header.

        At most one partial frame (<= 8 + 65535 bytes) stays buffered between calls. When
        nothing is buffered, frames are cut straight from ``data``: bulk transfers arrive
        as whole frames, and each byte is then copied once, into its frame.
        """
        if self._buffer:
            self._buffer += data
            view = memoryview(self._buffer)
        else:
            view = memoryview(data)
        frames = []
        offset, size = 0, len(view)
        try:
            while size - offset >= HEADER_SIZE:
                version, cmd, length, sid = HEADER.unpack_from(view, offset)
                if version not in self._versions:
                    raise ProtocolError(f"smux frame has unsupported version {version}")
                try:
                    command = Command(cmd)
                except ValueError:
                    raise ProtocolError(f"smux frame has unknown command {cmd}") from None
                if command is Command.UPD and version < 2:
                    raise ProtocolError("smux UPD frame in a version 1 session")
                end = offset + HEADER_SIZE + length
                if end > size:
                    break
                frames.append(Frame(command, sid, bytes(view[offset + HEADER_SIZE : end]), version))
                offset = end
            rest = bytes(view[offset:])
        finally:
            view.release()  # a bytearray cannot change size while a view is alive
        self._buffer = bytearray(rest)
        return frames


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamData:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer sent FIN: it will send no more on this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    consumed: int
    window: int


@dataclass(frozen=True, slots=True)
class KeepAlive:
    pass


Event = StreamOpened | StreamData | StreamEnded | WindowUpdate | KeepAlive


class StreamState(enum.Enum):
    OPEN = "open"
    LOCAL_CLOSED = "local closed"  # we sent FIN
    REMOTE_CLOSED = "remote closed"  # they sent FIN
    CLOSED = "closed"


# (state, what happened) -> new state; anything else is an illegal move.
_TRANSITIONS: dict[tuple[StreamState, str], StreamState] = {
    (StreamState.OPEN, "send_data"): StreamState.OPEN,
    (StreamState.OPEN, "recv_data"): StreamState.OPEN,
    (StreamState.OPEN, "send_fin"): StreamState.LOCAL_CLOSED,
    (StreamState.OPEN, "recv_fin"): StreamState.REMOTE_CLOSED,
    (StreamState.LOCAL_CLOSED, "recv_data"): StreamState.LOCAL_CLOSED,
    (StreamState.LOCAL_CLOSED, "recv_fin"): StreamState.CLOSED,
    (StreamState.REMOTE_CLOSED, "send_data"): StreamState.REMOTE_CLOSED,
    (StreamState.REMOTE_CLOSED, "send_fin"): StreamState.CLOSED,
}


class Stream:
    """The state of one multiplexed stream."""

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.state = StreamState.OPEN

    def move(self, what: str) -> None:
        new = _TRANSITIONS.get((self.state, what))
        if new is None:
            raise ProtocolError(
                f"smux stream {self.stream_id}: cannot {what.replace('_', ' ')} "
                f"in state {self.state.value}"
            )
        self.state = new


class SmuxSession:
    """One side of an smux session. The client opens odd stream ids from 3 up; the server
    accepts them (and would open even ids from 2 up)."""

    def __init__(
        self, *, client: bool, version: int = 1, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    ) -> None:
        if version not in (1, 2):
            raise ProtocolError(f"unsupported smux version {version}")
        if not 1 <= max_frame_size <= MAX_FRAME_DATA:
            raise ProtocolError(f"max frame size {max_frame_size} is out of range")
        self.client = client
        self.version = version
        self.max_frame_size = max_frame_size
        self.streams: dict[int, Stream] = {}
        self._next_id = 1 if client else 0
        self._reader = FrameReader(frozenset({version}))
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self.ignored_frames = 0  # frames for unknown streams, dropped as the library does

    # --- sending ----------------------------------------------------------------------

    def open_stream(self) -> int:
        self._next_id += 2
        sid = self._next_id
        self.streams[sid] = Stream(sid)
        self._emit(Command.SYN, sid)
        return sid

    def send(self, stream_id: int, data: bytes) -> None:
        stream = self._stream(stream_id)
        stream.move("send_data")
        view = memoryview(data)
        for start in range(0, len(view), self.max_frame_size):
            self._emit(Command.PSH, stream_id, bytes(view[start : start + self.max_frame_size]))

    def close_stream(self, stream_id: int) -> None:
        """Send FIN: we will write no more. Closing twice is harmless."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.state in (StreamState.LOCAL_CLOSED, StreamState.CLOSED):
            return
        stream.move("send_fin")
        self._emit(Command.FIN, stream_id)
        self._forget_if_closed(stream)

    def keepalive(self) -> None:
        self._emit(Command.NOP, 0)

    def window_update(self, stream_id: int, consumed: int, window: int) -> None:
        if self.version < 2:
            raise ProtocolError("window updates need smux version 2")
        self._emit(Command.UPD, stream_id, UPD_PAYLOAD.pack(consumed, window))

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Up to ``limit`` bytes of frames (all when None). Frames are a byte stream to
        the peer, so a cut between any two bytes is fine; the rest waits for next time."""
        if limit is None or limit >= len(self._out):
            out = bytes(self._out)
            self._out.clear()
        else:
            out = bytes(self._out[:limit])
            del self._out[:limit]
        return out

    @property
    def bytes_to_send(self) -> int:
        return len(self._out)

    # --- receiving --------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        for frame in self._reader.feed(data):
            self._on_frame(frame)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- internals --------------------------------------------------------------------

    def _stream(self, stream_id: int) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ProtocolError(f"smux stream {stream_id} is not open")
        return stream

    def _emit(self, command: Command, stream_id: int, data: bytes = b"") -> None:
        self._out += Frame(command, stream_id, data, self.version).encode()

    def _forget_if_closed(self, stream: Stream) -> None:
        if stream.state is StreamState.CLOSED:
            del self.streams[stream.stream_id]

    def _on_frame(self, frame: Frame) -> None:
        sid = frame.stream_id
        if frame.command is Command.NOP:
            self._events.append(KeepAlive())
            return
        if frame.command is Command.SYN:
            if sid in self.streams:
                return  # a repeated SYN is ignored, as the library does
            if sid % 2 == (1 if self.client else 0) or sid == 0:
                raise ProtocolError(f"peer opened smux stream {sid}, which is ours to number")
            self.streams[sid] = Stream(sid)
            self._events.append(StreamOpened(sid))
            return
        stream = self.streams.get(sid)
        if stream is None or stream.state in (StreamState.REMOTE_CLOSED, StreamState.CLOSED):
            # Unknown, or the peer already said FIN: the library drops these too.
            self.ignored_frames += 1
            return
        if frame.command is Command.PSH:
            if frame.data:
                stream.move("recv_data")
                self._events.append(StreamData(sid, frame.data))
        elif frame.command is Command.FIN:
            stream.move("recv_fin")
            self._events.append(StreamEnded(sid))
            self._forget_if_closed(stream)
        elif frame.command is Command.UPD:
            if len(frame.data) != UPD_PAYLOAD.size:
                raise ProtocolError(f"smux UPD frame has {len(frame.data)} bytes, not 8")
            consumed, window = UPD_PAYLOAD.unpack(frame.data)
            self._events.append(WindowUpdate(sid, consumed, window))
