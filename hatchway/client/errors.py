"""The client's one error hierarchy. Each error's text is what the user reads, and its
class carries the exit status it maps to (interfaces.md, "Exit codes of client commands")."""

from __future__ import annotations

import enum
from typing import ClassVar


class ExitStatus(enum.IntEnum):
    OK = 0
    INTERRUPTED = 130
    INVALID_ARGUMENTS = 252
    MISSING_CONFIGURATION = 253
    SERVICE_ERROR = 254
    TRANSPORT_FAILURE = 255


class ClientFailure(Exception):
    """A failure the client reports to the user and turns into its exit status."""

    exit_status: ClassVar[ExitStatus] = ExitStatus.TRANSPORT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArguments(ClientFailure):
    exit_status = ExitStatus.INVALID_ARGUMENTS


class UnsupportedSession(InvalidArguments):
    """A session this client cannot serve yet, such as port forwarding."""


class MissingConfiguration(ClientFailure):
    """No credentials, no region, an unknown profile: nothing was sent anywhere."""

    exit_status = ExitStatus.MISSING_CONFIGURATION


class ServiceFailure(ClientFailure):
    """The service answered with an error."""

    exit_status = ExitStatus.SERVICE_ERROR


class TransportFailure(ClientFailure):
    """The network, the WebSocket or the data channel failed."""


class SessionBroken(TransportFailure):
    """The data channel cannot go on (unacknowledged data, a protocol violation)."""


class SessionTimedOut(TransportFailure):
    """ResumeSession gave no token: the service has already given up on the session."""


class Interrupted(ClientFailure):
    """A local signal, or our own output closed under us."""

    exit_status = ExitStatus.INTERRUPTED
