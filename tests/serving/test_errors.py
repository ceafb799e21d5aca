"""serving/backends/errors.py: TF status codes and HTTP statuses to backend errors."""

import pytest

from mrl_keras.serving import (
    BackendError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from mrl_keras.serving.backends.errors import error_from_code, error_from_http


@pytest.mark.parametrize(
    "code, cls",
    [
        ("INVALID_ARGUMENT", InvalidInput),
        ("OUT_OF_RANGE", InvalidInput),
        ("FAILED_PRECONDITION", FailedPrecondition),
        ("NOT_FOUND", NotFound),
        ("UNAVAILABLE", Unavailable),
        ("DEADLINE_EXCEEDED", DeadlineExceeded),
        ("RESOURCE_EXHAUSTED", ResourceExhausted),
        ("INTERNAL", Internal),
        ("UNKNOWN", Internal),
        ("UNIMPLEMENTED", Unimplemented),
    ],
)
def test_error_from_code(code, cls):
    error = error_from_code(code.lower(), "details")
    assert type(error) is cls
    assert error.code == code and error.message == "details"
    assert isinstance(error, BackendError)


def test_unknown_code_is_a_plain_backend_error():
    error = error_from_code("WEIRD", "x")
    assert type(error) is BackendError and error.code == "WEIRD"


def test_python_exception_families():
    assert isinstance(InvalidInput("x"), ValueError)
    assert isinstance(DeadlineExceeded("x"), TimeoutError)


def test_error_from_http():
    assert type(error_from_http(400, "bad")) is InvalidInput
    assert type(error_from_http(404, "gone")) is NotFound
    assert isinstance(error_from_http(599, "?"), BackendError)
