"""`ReloadWorker`: index reloads on one thread of their own, coalesced.

`POST /admin/reload`, SIGHUP and the index watcher all ask for a reload; a reload loads and
verifies an index (seconds of I/O and hashing on a big one). Running each on the search thread
pool let a storm of reload calls starve searches. Here every request goes to one worker
thread; a request that arrives while a reload runs shares that reload's result (its Future)
instead of queueing another, so N concurrent calls do at most one load at a time and searches
only ever compete with that one load's CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ReloadWorker"]


class ReloadWorker:
    """Runs `fn()` on its own single thread; concurrent `submit()`s share one run.

    Attributes:
        runs: how many times `fn` has started (a storm of calls counts once per load).
        max_concurrent: the most runs ever in progress at once (1 by construction).
    """

    def __init__(self, fn: Callable[[], Any], name: str = "mrl-reload"):
        self._fn = fn
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._current: Future | None = None
        self._running = 0
        self.runs = 0
        self.max_concurrent = 0

    def _run(self) -> Any:
        with self._lock:
            self.runs += 1
            self._running += 1
            self.max_concurrent = max(self.max_concurrent, self._running)
        try:
            return self._fn()
        finally:
            with self._lock:
                self._running -= 1

    def submit(self) -> Future:
        """The Future of the reload in progress, or of a new one if none is."""
        with self._lock:
            if self._current is None or self._current.done():
                self._current = self._executor.submit(self._run)
            return self._current

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
