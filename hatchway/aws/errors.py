"""AWS errors, each mapped once to its wire shape: an HTTP status, ``__type`` and ``message``.

botocore reads ``__type`` (after any ``namespace#`` prefix) as the error code, so a
client sees ``ssm.exceptions.InvalidDocument`` and the like.
"""

from __future__ import annotations

import json
from typing import ClassVar


class AwsError(Exception):
    """An error that reaches the caller in the AWS JSON 1.1 error shape."""

    code: ClassVar[str] = "InternalServerError"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> bytes:
        return json.dumps({"__type": self.code, "message": self.message}).encode()

    def headers(self) -> dict[str, str]:
        return {"x-amzn-ErrorType": self.code, "Content-Type": "application/x-amz-json-1.1"}


def _error(code: str, status: int) -> type[AwsError]:
    return type(
        code, (AwsError,), {"code": code, "status": status, "__doc__": f"{code} ({status})"}
    )


# Common errors of every AWS JSON service.
InternalServerError = _error("InternalServerError", 500)
ServiceUnavailable = _error("ServiceUnavailable", 503)
ValidationException = _error("ValidationException", 400)
SerializationException = _error("SerializationException", 400)
UnknownOperationException = _error("UnknownOperationException", 400)
RequestEntityTooLarge = _error("RequestEntityTooLargeException", 413)
RequestTimeout = _error("RequestTimeoutException", 408)
AccessDeniedException = _error("AccessDeniedException", 400)
ThrottlingException = _error("ThrottlingException", 400)

# Authentication (SigV4).
MissingAuthenticationTokenException = _error("MissingAuthenticationTokenException", 403)
UnrecognizedClientException = _error("UnrecognizedClientException", 400)
InvalidSignatureException = _error("InvalidSignatureException", 400)
IncompleteSignatureException = _error("IncompleteSignatureException", 400)
InvalidClientTokenId = _error("InvalidClientTokenId", 403)
ExpiredTokenException = _error("ExpiredTokenException", 400)

SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNKNOWN_KEY_MESSAGE = "The security token included in the request is invalid."
MISSING_AUTH_MESSAGE = "Missing Authentication Token"

# SSM document errors
InvalidDocument = _error("InvalidDocument", 400)
InvalidDocumentContent = _error("InvalidDocumentContent", 400)
InvalidDocumentSchemaVersion = _error("InvalidDocumentSchemaVersion", 400)
DocumentAlreadyExists = _error("DocumentAlreadyExists", 400)
InvalidParameters = _error("InvalidParameters", 400)
DuplicateDocumentContent = _error("DuplicateDocumentContent", 400)
InvalidDocumentVersion = _error("InvalidDocumentVersion", 400)
DocumentLimitExceeded = _error("DocumentLimitExceeded", 400)
MaxDocumentSizeExceeded = _error("MaxDocumentSizeExceeded", 400)
InvalidDocumentOperation = _error("InvalidDocumentOperation", 400)
