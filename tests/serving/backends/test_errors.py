"""serving/backends/errors.py: TF status codes and HTTP statuses to backend errors."""

from __future__ import annotations

import pickle

import pytest

from mrl_keras.serving.backends.errors import (
    BackendError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidInput,
    NotFound,
    Unavailable,
    error_from_code,
    error_from_http,
)


@pytest.mark.parametrize(
    "code, cls, http",
    [
        ("INVALID_ARGUMENT", InvalidInput, 400),
        ("FAILED_PRECONDITION", FailedPrecondition, 400),
        ("NOT_FOUND", NotFound, 404),
        ("UNAVAILABLE", Unavailable, 503),
        ("DEADLINE_EXCEEDED", DeadlineExceeded, 504),
        ("UNKNOWN", Internal, 500),
        ("PERMISSION_DENIED", BackendError, 403),
    ],
)
def test_error_from_code(code, cls, http):
    e = error_from_code(code, "the message")
    assert type(e) is cls and e.code == code and e.message == "the message"
    assert e.http_status == http
    assert str(e) == f"{code}: the message"
    assert isinstance(pickle.loads(pickle.dumps(e)), cls)


def test_error_from_http_and_subclass_constructors():
    assert isinstance(error_from_http(404, "x"), NotFound)
    assert isinstance(error_from_http(503, "x"), Unavailable)
    assert error_from_http(400, "x").code == "INVALID_ARGUMENT"
    assert NotFound("gone").code == "NOT_FOUND"
    assert isinstance(InvalidInput("bad"), ValueError)
    assert isinstance(DeadlineExceeded("late"), TimeoutError)


def test_unknown_code_is_a_plain_backend_error():
    error = error_from_code("WEIRD", "x")
    assert type(error) is BackendError and error.code == "WEIRD"
    assert error_from_code("out_of_range", "x").code == "OUT_OF_RANGE"  # case-insensitive
