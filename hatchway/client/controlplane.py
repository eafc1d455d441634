"""The control-plane calls a client makes, through botocore: SSM StartSession,
ResumeSession and TerminateSession, and KMS GenerateDataKey (data-channel.md §1.1, §4.4).

botocore resolves credentials, region and endpoint the usual way (interfaces.md): an
explicit endpoint URL wins, then AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL and the profile's
endpoint_url. So ``endpoint_url`` is passed only when the user gave one.

These calls block; the session loop runs them in a thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.session  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    ParamValidationError,
)

from ..aws.explain import explain_client, mask_key_id
from ..aws.explain import hidden as mask
from .config import AwsSettings, StartedSession
from .errors import (
    InvalidArguments,
    MissingConfiguration,
    ServiceFailure,
    TransportFailure,
)

# Short enough that a cleanup call (TerminateSession) cannot hold the exit for a minute.
_CLIENT_CONFIG = Config(connect_timeout=10, read_timeout=30)
DATA_KEY_BYTES = 64


@contextlib.contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn botocore's exceptions into the client's, keeping botocore's words."""
    try:
        yield
    except ClientError as exc:
        raise ServiceFailure(str(exc)) from exc
    except ParamValidationError as exc:
        raise InvalidArguments(str(exc)) from exc
    except (ConnectionError, HTTPClientError) as exc:
        raise TransportFailure(f"{what} failed: {exc}") from exc
    except BotoCoreError as exc:
        # What is left is credentials, region, profile and endpoint configuration.
        raise MissingConfiguration(str(exc)) from exc


class ControlPlane:
    """SSM and KMS clients for one session, created on first use."""

    def __init__(self, settings: AwsSettings, log: logging.Logger) -> None:
        self.settings = settings
        self._log = log
        self._session = botocore.session.Session(profile=settings.profile)
        self._clients: dict[str, Any] = {}

    @property
    def ca_bundle(self) -> str | None:
        """AWS_CA_BUNDLE or the profile's ca_bundle: the data channel trusts it too."""
        with translated_errors("reading the configuration"):
            value = self._session.get_config_variable("ca_bundle")
        return str(value) if value else None

    def check_credentials(self) -> None:
        """Fail before any call when there are no credentials, and log where they came from."""
        with translated_errors("loading credentials"):
            credentials = self._session.get_credentials()
        if credentials is None:
            raise MissingConfiguration(
                "Unable to locate credentials. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or name a profile with --profile."
            )
        self._log.debug(
            "credentials: source=%s access_key_id=%s",
            credentials.method,
            mask_key_id(credentials.access_key),
        )

    def start_session(
        self,
        target: str,
        document_name: str | None,
        parameters: Mapping[str, list[str]],
        reason: str | None,
    ) -> StartedSession:
        request: dict[str, Any] = {"Target": target}
        if document_name:
            request["DocumentName"] = document_name
        if parameters:
            request["Parameters"] = dict(parameters)
        if reason:
            request["Reason"] = reason
        ssm = self._client("ssm")
        with translated_errors("StartSession"):
            response = ssm.start_session(**request)
        self._log.debug(
            "StartSession: request_id=%s session_id=%s stream_url=%s token=%s",
            response.get("ResponseMetadata", {}).get("RequestId", ""),
            response.get("SessionId"),
            response.get("StreamUrl"),
            mask(str(response.get("TokenValue") or "")),
        )
        return _started(response)

    def resume_session(self, session_id: str) -> str | None:
        """A fresh data-channel token, or None when the service gave none (timed out)."""
        ssm = self._client("ssm")
        with translated_errors("ResumeSession"):
            response = ssm.resume_session(SessionId=session_id)
        token = response.get("TokenValue")
        self._log.debug(
            "ResumeSession: request_id=%s token=%s",
            response.get("ResponseMetadata", {}).get("RequestId", ""),
            mask(token) if token else "none",
        )
        return token if isinstance(token, str) and token else None

    def terminate_session(self, session_id: str) -> None:
        ssm = self._client("ssm")
        with translated_errors("TerminateSession"):
            ssm.terminate_session(SessionId=session_id)
        self._log.debug("TerminateSession: session_id=%s", session_id)

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """(CiphertextBlob, Plaintext) of a new 64-byte session key."""
        kms = self._client("kms")
        try:
            with translated_errors("KMS GenerateDataKey"):
                response = kms.generate_data_key(
                    KeyId=key_id, NumberOfBytes=DATA_KEY_BYTES, EncryptionContext=dict(context)
                )
        except ServiceFailure as failure:
            # The reference plugin's words, which the agent passes on to the user (agent.md §6).
            cause = failure.__cause__
            if isinstance(cause, ClientError):
                error = cause.response.get("Error", {})
                raise ServiceFailure(
                    "Error calling KMS GenerateDataKey API: "
                    f"{error.get('Code', 'Unknown')}: {error.get('Message', '')}"
                ) from cause
            raise
        self._log.debug("KMS GenerateDataKey: key_id=%s", key_id)
        return bytes(response["CiphertextBlob"]), bytes(response["Plaintext"])

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            explicit = (
                self.settings.endpoint_url if service == "ssm" else self.settings.kms_endpoint_url
            )
            with translated_errors(f"creating the {service} client"):
                client = self._session.create_client(
                    service,
                    region_name=self.settings.region,
                    endpoint_url=explicit,
                    config=_CLIENT_CONFIG,
                )
            if self._log.isEnabledFor(logging.DEBUG):
                explain_client(client, self._log)
            self._log.debug(
                "%s: region=%s endpoint=%s",
                service,
                client.meta.region_name,
                client.meta.endpoint_url,
            )
            self._clients[service] = client
        return client


def _started(response: Mapping[str, Any]) -> StartedSession:
    fields = [response.get(name) for name in ("SessionId", "TokenValue", "StreamUrl")]
    if not all(isinstance(value, str) and value for value in fields):
        raise ServiceFailure("StartSession answered without SessionId, TokenValue or StreamUrl")
    session_id, token, stream_url = fields
    return StartedSession(str(session_id), str(token), str(stream_url))
