"""The backend interface's pure parts: error family, retry policy, `info_from_signatures`."""

from __future__ import annotations

import pickle
import time

import pytest

from mrl_keras.serving import (
    BackendError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidInput,
    NotFound,
    RetryPolicy,
    SignatureSpec,
    TensorInfo,
    Unavailable,
)
from mrl_keras.serving.backends.backend import info_from_signatures
from mrl_keras.serving.backends.errors import error_from_code, error_from_http


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


def _flaky(errors):
    calls = []

    def fn(left):
        calls.append(left)
        if errors:
            raise errors.pop(0)
        return "ok"

    return fn, calls


def test_retry_only_unavailable():
    policy = RetryPolicy(max_retries=3, initial_backoff_s=0.001, max_backoff_s=0.002)
    fn, calls = _flaky([Unavailable("down"), Unavailable("down")])
    assert policy.call(fn, timeout=5) == "ok" and len(calls) == 3
    for error in (InvalidInput("x"), FailedPrecondition("x"), NotFound("x")):
        fn, calls = _flaky([error])
        with pytest.raises(type(error)):
            policy.call(fn, timeout=5)
        assert len(calls) == 1


def test_retry_is_bounded_by_count_and_deadline():
    policy = RetryPolicy(max_retries=2, initial_backoff_s=0.001, max_backoff_s=0.001)
    fn, calls = _flaky([Unavailable("down")] * 10)
    with pytest.raises(Unavailable):
        policy.call(fn, timeout=5)
    assert len(calls) == 3
    slow = RetryPolicy(max_retries=100, initial_backoff_s=0.2, max_backoff_s=0.2)
    fn, calls = _flaky([Unavailable("down")] * 100)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        slow.call(fn, timeout=0.5)
    # Never sleeps past the deadline (100 retries of 0.1-0.2 s would take 10-20 s); the slack
    # is for a loaded CI machine.
    assert time.monotonic() - start < 1.5
    assert len(calls) <= 5 and all(left <= 0.5 for left in calls)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_retries": -1}, {"initial_backoff_s": 0}, {"initial_backoff_s": 2, "max_backoff_s": 1}],
)
def test_retry_policy_validates(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        RetryPolicy(**kwargs)


def _spec(name, inputs, outputs):
    return SignatureSpec(name, inputs, outputs)


def _signatures(dims=(8, 16, 32), classify=True):
    inp = {"inputs": TensorInfo("float32", (-1, 10))}
    sigs = {
        f"embed_{m}": _spec(f"embed_{m}", inp, {"embedding": TensorInfo("float32", (-1, m))})
        for m in dims
    }
    if classify:
        for m in dims:
            sigs[f"classify_{m}"] = _spec(
                f"classify_{m}", inp, {"logits": TensorInfo("float32", (-1, 5))}
            )
        sigs["classify_cascade"] = _spec("classify_cascade", inp, {})
    sigs["embed_8_bytes"] = _spec("embed_8_bytes", {"image_bytes": TensorInfo("string", (-1,))}, {})
    return sigs


def test_info_from_signatures():
    info = info_from_signatures("m", 3, _signatures())
    assert info.exported_dims == (8, 16, 32) and info.embedding_dim == 32
    assert info.classify_dims == (8, 16, 32) and info.num_classes == 5 and info.has_cascade
    assert (info.input_name, info.input_shape, info.input_dtype) == (
        "inputs",
        (None, 10),
        "float32",
    )
    bare = info_from_signatures("m", 1, _signatures(dims=(64,), classify=False))
    assert bare.num_classes is None and not bare.has_cascade and bare.classify_dims == ()


def test_info_without_embed_signature_fails_clearly():
    with pytest.raises(FailedPrecondition, match=r"no embed_\{m\} signature"):
        info_from_signatures("m", 1, {"serving_default": _spec("serving_default", {}, {})})
