"""Which of an agent's data-channel messages a client may be given.

The relay passes frames through untouched, but a message's type sits in its header, which
is never encrypted, so the relay can choose per frame. The official session-manager-plugin
handles output_stream_data, acknowledge, channel_closed, start_publication and
pause_publication (``processOutputMessage`` in src/datachannel/streaming.go) and logs
"Invalid message type received" for anything else, such as the agent_session_state an
agent sends the service when it opens and closes its data channel (data-channel.md §2.1).
"""

from __future__ import annotations

from ..protocol import MessageType, peek_message_type

FOR_CLIENTS = frozenset(
    {
        MessageType.OUTPUT_STREAM_DATA,
        MessageType.ACKNOWLEDGE,
        MessageType.CHANNEL_CLOSED,
        MessageType.START_PUBLICATION,
        MessageType.PAUSE_PUBLICATION,
    }
)


def for_client(frame: bytes) -> bool:
    """True when a client understands the agent's ``frame``; the rest is for the service."""
    return peek_message_type(frame) in FOR_CLIENTS
