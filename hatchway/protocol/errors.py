"""The one error type of the protocol layer."""

from __future__ import annotations


class ProtocolError(Exception):
    """Malformed bytes, an illegal state transition, or a violated protocol limit.

    The message always says what was wrong, so the I/O layer can log it or hand it
    to the user as it is.
    """


class FlowControlError(ProtocolError):
    """The caller tried to queue more data than the channel's bounded buffers allow."""
