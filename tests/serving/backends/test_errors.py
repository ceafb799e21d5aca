"""serving/backends/errors.py: TF status codes and HTTP statuses to backend errors."""

import pytest

from mrl_keras.serving.backends import errors as E


@pytest.mark.parametrize(
    "code, cls",
    [
        ("INVALID_ARGUMENT", E.InvalidInput),
        ("OUT_OF_RANGE", E.InvalidInput),
        ("FAILED_PRECONDITION", E.FailedPrecondition),
        ("NOT_FOUND", E.NotFound),
        ("UNAVAILABLE", E.Unavailable),
        ("DEADLINE_EXCEEDED", E.DeadlineExceeded),
        ("RESOURCE_EXHAUSTED", E.ResourceExhausted),
        ("INTERNAL", E.Internal),
        ("UNKNOWN", E.Internal),
        ("UNIMPLEMENTED", E.Unimplemented),
    ],
)
def test_error_from_code(code, cls):
    error = E.error_from_code(code.lower(), "details")
    assert type(error) is cls
    assert error.code == code and error.message == "details"
    assert isinstance(error, E.BackendError)


def test_unknown_code_is_a_plain_backend_error():
    error = E.error_from_code("WEIRD", "x")
    assert type(error) is E.BackendError and error.code == "WEIRD"


def test_python_exception_families():
    assert isinstance(E.InvalidInput("x"), ValueError)
    assert isinstance(E.DeadlineExceeded("x"), TimeoutError)


def test_error_from_http():
    assert type(E.error_from_http(400, "bad")) is E.InvalidInput
    assert type(E.error_from_http(404, "gone")) is E.NotFound
    assert isinstance(E.error_from_http(599, "?"), E.BackendError)
