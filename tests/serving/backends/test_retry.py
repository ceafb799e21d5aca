"""serving/backends/retry.py: only UNAVAILABLE is retried, within the count and the deadline."""

from __future__ import annotations

import time

import pytest

from mrl_keras.serving.backends.errors import (
    FailedPrecondition,
    InvalidInput,
    NotFound,
    Unavailable,
)
from mrl_keras.serving.backends.retry import RetryPolicy


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
