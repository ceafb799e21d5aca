"""Deadline and retry rules shared by the TF Serving clients.

Every call has an explicit deadline; only UNAVAILABLE is retried, with bounded exponential
backoff (full jitter) that never sleeps past the deadline, and only while the transport says a
retry can help: an error carrying `retryable = False` (gRPC: the channel is in
TRANSIENT_FAILURE, waiting out its reconnect backoff; REST: the connection was refused) fails
at once, so a search with the backend down answers 503 in milliseconds, not at its deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from mrl_keras.serving.backends.errors import BackendError, DeadlineExceeded, Unavailable

T = TypeVar("T")


class RetryPolicy:
    """Args:
    max_retries: int. Retries after the first attempt (UNAVAILABLE only, and only errors the
        transport marks retryable: a gRPC channel still connecting, a dropped REST connection,
        HTTP 503). The default 6 sleeps at least 1.275 s in all (jitter keeps half of each
        backoff).
    initial_backoff_s: float. First backoff; doubles per retry.
    max_backoff_s: float. Cap on one backoff.
    """

    def __init__(
        self, max_retries: int = 6, initial_backoff_s: float = 0.05, max_backoff_s: float = 1.0
    ):
        if max_retries < 0:
            raise ValueError(f"Expected max_retries >= 0. Received: max_retries={max_retries}")
        if initial_backoff_s <= 0 or max_backoff_s < initial_backoff_s:
            raise ValueError(
                "Expected 0 < initial_backoff_s <= max_backoff_s. Received: "
                f"initial_backoff_s={initial_backoff_s}, max_backoff_s={max_backoff_s}"
            )
        self.max_retries = max_retries
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s

    def backoff(self, attempt: int) -> float:
        cap = min(self.max_backoff_s, self.initial_backoff_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    def call(self, fn: Callable[[float], T], timeout: float) -> T:
        """Calls `fn(seconds_left)` until it succeeds, fails for good, or the deadline passes.

        Raises:
            BackendError: the last error (`Unavailable` when retries or time ran out on it,
                `DeadlineExceeded` when the deadline passed before any answer).
        """
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"Deadline of {timeout:.3g} s exceeded before the call.")
            try:
                return fn(left)
            except BackendError as e:
                if (
                    not isinstance(e, Unavailable)
                    or not getattr(e, "retryable", True)
                    or attempt >= self.max_retries
                ):
                    raise
                pause = self.backoff(attempt)
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)
                attempt += 1
