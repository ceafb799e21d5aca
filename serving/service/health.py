"""`HealthProber`: the service's readiness, probed in the background and answered from cache.

`GET /readyz` must answer at once whatever the backend does (a dead or hung model server must
not make the readiness check itself hang), and the service must see a backend that came back
within a probe interval. A daemon thread calls `probe()` (the service's `readiness`) every
`interval_s` and keeps the last answer; `/readyz` reads it. Backend errors become the state
`"UNAVAILABLE"`-style codes in the cached details; their messages (which name addresses) go to
the log only, once per change of state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mrl_keras.serving.backends.errors import BackendError

__all__ = ["HealthProber"]

logger = logging.getLogger("mrl_keras.serving.service")


class HealthProber:
    """Calls `probe() -> (ready, details)` every `interval_s` on its own thread.

    Args:
        probe: the readiness check (may block on the backend; it runs on the prober thread).
        interval_s: float > 0. Seconds between probes.
        on_error: called with a `BackendError` the probe raised (e.g. to count it).
    """

    def __init__(
        self,
        probe: Callable[[], tuple[bool, dict[str, Any]]],
        interval_s: float = 0.25,
        on_error: Callable[[BackendError], None] | None = None,
    ):
        if not interval_s > 0:
            raise ValueError(f"Expected interval_s > 0. Received: interval_s={interval_s!r}")
        self.probe = probe
        self.interval_s = float(interval_s)
        self.on_error = on_error
        self._state: tuple[bool, dict[str, Any], float] = (
            False,
            {"backend_state": "UNKNOWN", "probed": False},
            time.monotonic(),
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._last_problem: str | None = None
        self.probes = 0
        self._thread = threading.Thread(target=self._run, name="mrl-health", daemon=True)

    def start(self) -> HealthProber:
        self.probe_once()
        self._thread.start()
        return self

    def probe_once(self) -> tuple[bool, dict[str, Any]]:
        """Runs one probe now and caches its answer."""
        try:
            ready, details = self.probe()
            details = dict(details)
            problem = details.get("error") if not ready else None
        except BackendError as e:
            if self.on_error is not None:
                self.on_error(e)
            ready, details = False, {"backend_state": e.code}
            problem = f"backend unavailable ({e.code}): {e.message}"
        except Exception as e:  # a probe bug must not kill the prober
            ready, details = False, {"backend_state": "UNKNOWN"}
            problem = f"readiness probe failed: {type(e).__name__}: {e}"
        if problem != self._last_problem:
            if problem:
                logger.warning(
                    "%s", problem if problem.startswith("not ready") else f"not ready: {problem}"
                )
            elif self._last_problem is not None:
                logger.info("ready again")
            self._last_problem = problem
        self.probes += 1
        self._state = (ready, details, time.monotonic())
        return ready, details

    def snapshot(self) -> tuple[bool, dict[str, Any], float]:
        """`(ready, details, seconds since that probe)` without touching the backend."""
        ready, details, at = self._state
        return ready, dict(details), time.monotonic() - at

    def report_unavailable(self, code: str) -> None:
        """A request just found the backend unreachable: not ready at once (no waiting for
        the next probe), and probe again now."""
        _, details, _ = self._state
        self._state = (False, dict(details, backend_state=code), time.monotonic())
        self._wake.set()

    def poke(self) -> None:
        """Probe again now (e.g. after a reload switched the pair)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.probe_once()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
