"""One exception family for every model backend, keyed by the TensorFlow status code.

The dev model server raises the same classes, so a status that starts on the server reaches
the caller with its code and message unchanged, over gRPC, REST or in-process.
"""

from __future__ import annotations

# TF status code name -> HTTP status, as TF Serving's REST server maps them
# (tensorflow_serving/model_servers/http_server.cc).
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# HTTP status -> the code a REST client reports. REST loses the difference between
# INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE (all 400): we report INVALID_ARGUMENT.
CODE_BY_HTTP_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class BackendError(Exception):
    """A model backend call failed with a TensorFlow status.

    Args:
        code: str. The TF status code name (`"INVALID_ARGUMENT"`, `"NOT_FOUND"`, ...).
        message: str. The server's message, unchanged.

    Subclasses fix the code and take the message alone, e.g. `NotFound("Servable not found
    for request: Latest(x)")`; `error_from_code(code, message)` picks the right class.
    """

    default_code = "UNKNOWN"

    def __init__(self, code: str, message: str = ""):
        super().__init__(code, message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE.get(self.code, 500)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __reduce__(self):
        return (error_from_code, (self.code, self.message))


class _CodedError(BackendError):
    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(code or self.default_code, message)


class InvalidInput(_CodedError, ValueError):
    """INVALID_ARGUMENT (also OUT_OF_RANGE): the request is malformed. Never retried."""

    default_code = "INVALID_ARGUMENT"


class FailedPrecondition(_CodedError):
    """FAILED_PRECONDITION: e.g. the signature does not exist. Never retried."""

    default_code = "FAILED_PRECONDITION"


class NotFound(_CodedError):
    """NOT_FOUND: unknown model or version. Never retried."""

    default_code = "NOT_FOUND"


class Unavailable(_CodedError):
    """UNAVAILABLE: the server cannot be reached or is overloaded. The only retried code."""

    default_code = "UNAVAILABLE"


class DeadlineExceeded(_CodedError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's deadline passed."""

    default_code = "DEADLINE_EXCEEDED"


class ResourceExhausted(_CodedError):
    """RESOURCE_EXHAUSTED: e.g. a message over the size limit, or a full queue."""

    default_code = "RESOURCE_EXHAUSTED"


class Internal(_CodedError):
    """INTERNAL, UNKNOWN or DATA_LOSS: the server failed."""

    default_code = "INTERNAL"


class Unimplemented(_CodedError):
    """UNIMPLEMENTED: the server does not offer this method."""

    default_code = "UNIMPLEMENTED"


_CLASS_BY_CODE: dict[str, type[_CodedError]] = {
    "INVALID_ARGUMENT": InvalidInput,
    "OUT_OF_RANGE": InvalidInput,
    "FAILED_PRECONDITION": FailedPrecondition,
    "NOT_FOUND": NotFound,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "INTERNAL": Internal,
    "UNKNOWN": Internal,
    "DATA_LOSS": Internal,
    "UNIMPLEMENTED": Unimplemented,
}


def error_from_code(code: str, message: str) -> BackendError:
    """Returns the exception for a TF status code name (unknown codes: `BackendError`)."""
    code = str(code).upper()
    cls = _CLASS_BY_CODE.get(code)
    if cls is None:
        return BackendError(code, message)
    return cls(message, code=code)


def error_from_http(status: int, message: str) -> BackendError:
    """Returns the exception for a TF Serving REST error (HTTP status + `{"error": ...}`)."""
    return error_from_code(CODE_BY_HTTP_STATUS.get(int(status), "UNKNOWN"), message)
