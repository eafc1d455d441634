"""The SSM errors this control plane raises, with their HTTP status."""

from ...aws.errors import (
    InvalidDocument,  # noqa: F401  (shared with document checks)
    _error,
)

TargetNotConnected = _error("TargetNotConnected", 400)
DoesNotExistException = _error("DoesNotExistException", 400)
InvalidInstanceId = _error("InvalidInstanceId", 400)
InvalidActivation = _error("InvalidActivation", 400)
InvalidActivationId = _error("InvalidActivationId", 400)
InvalidResourceId = _error("InvalidResourceId", 400)
InvalidResourceType = _error("InvalidResourceType", 400)
TooManyTagsError = _error("TooManyTagsError", 400)
InvalidFilterKey = _error("InvalidFilterKey", 400)
InvalidFilter = _error("InvalidFilter", 400)
InvalidInstanceInformationFilterValue = _error("InvalidInstanceInformationFilterValue", 400)
TooManyUpdates = _error("TooManyUpdates", 400)
