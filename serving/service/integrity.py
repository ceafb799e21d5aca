"""`IntegrityMonitor`: the served index's files re-verified in the background.

The rerank store is memory-mapped read-only and ScaNN reads its files once, but a file edited
in place under a running service (a bit flip, a careless copy) changes what the memory map
serves: one flipped bit of `rerank.npy` made a search return a score of 4.7e36. Every
`interval_s` (default hourly; `mrl serve --verify-interval`) and after every reload the
monitor recomputes the sha256 of every file the served version's manifest lists. On a
mismatch it logs the file, marks the pair failed (searches on it answer 503 and `/readyz`
turns 503 naming the file), and asks `fallback()` for another pair: the service loads the
newest older version that verifies and whose model is AVAILABLE, if there is one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["IntegrityMonitor", "first_mismatch"]

logger = logging.getLogger("mrl_keras.serving.service")


def first_mismatch(index: Any, stop: threading.Event | None = None) -> str | None:
    """The first file of `index` (an `AdaptiveIndex`) whose sha256 differs from its manifest
    (or that is missing), or None when all match."""
    root = Path(index.path)
    for name, expected in sorted(index.manifest["files"].items()):
        if stop is not None and stop.is_set():
            return None
        digest = hashlib.sha256()
        try:
            with open(root / name, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 22), b""):
                    digest.update(block)
        except OSError:
            return name
        if digest.hexdigest() != expected:
            return name
    return None


def _fingerprint(index: Any) -> tuple:
    """(name, inode, size, mtime) of every listed file: what an in-place edit changes."""
    out = []
    for name in sorted(index.manifest["files"]):
        try:
            st = os.stat(Path(index.path) / name)
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None, None, None))
    return tuple(out)


class IntegrityMonitor:
    """Verifies `current()`'s index every `interval_s` (0: only when asked, `check()`).

    Args:
        current: returns the served pair (an object with `.index`).
        fallback: called with `(failed_pair, file_name)` after a mismatch; may install
            another pair (then searches go on from it).
        interval_s: seconds between background checks; 0 disables the thread.
    """

    def __init__(
        self,
        current: Callable[[], Any],
        fallback: Callable[[Any, str], None] | None = None,
        interval_s: float = 3600.0,
    ):
        if not interval_s >= 0:
            raise ValueError(f"Expected interval_s >= 0. Received: interval_s={interval_s!r}")
        self.current = current
        self.fallback = fallback
        self.interval_s = float(interval_s)
        self._failed: dict[int, str] = {}  # id(pair) -> file name
        self._failed_pairs: list[Any] = []  # keeps ids stable while marked
        self._verified: dict[int, tuple[Any, float, Any]] = {}  # id(pair) -> (pair, when, stats)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.checks = 0
        self._thread: threading.Thread | None = None
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="mrl-verify", daemon=True)
            self._thread.start()

    def failure(self, pair: Any) -> str | None:
        """The file that failed verification in `pair`, or None."""
        return self._failed.get(id(pair))

    def check(self, max_age_s: float = 0.0) -> str | None:
        """Verifies the served pair now (or trusts a verification of it that finished less
        than `max_age_s` ago: a storm of reloads hashes the files once a second at most);
        returns the mismatched file, or None."""
        pair = self.current()
        known = self.failure(pair)
        if known is not None:
            return known
        stats = _fingerprint(pair.index)
        last = self._verified.get(id(pair))
        if (
            max_age_s > 0
            and last is not None
            and last[2] == stats  # no file rewritten, resized or touched since
            and time.monotonic() - last[1] < max_age_s
        ):
            return None
        name = first_mismatch(pair.index, self._stop)
        self.checks += 1
        if name is None:
            self._verified = {id(pair): (pair, time.monotonic(), stats)}
        if name is None:
            return None
        with self._lock:
            if id(pair) not in self._failed:
                self._failed[id(pair)] = name
                self._failed_pairs.append(pair)
                first = True
            else:
                first = False
        if first:
            logger.error(
                "index version %s at %s failed verification: %s does not match its checksum; "
                "not serving from it",
                pair.index.index_version,
                pair.index.path,
                name,
            )
            if self.fallback is not None:
                try:
                    self.fallback(pair, name)
                except Exception as e:  # keep the failure marked; searches answer 503
                    logger.error("no previous good index version to fall back to: %s", e)
        return name

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as e:  # never let the monitor die
                logger.warning("index verification could not run: %s", e)

    def close(self) -> None:
        self._stop.set()


def fall_back_to_previous(service: Any, failed: Any, name: str) -> None:
    """Installs the newest index version older than `failed`'s that verifies and whose model
    version the backend has AVAILABLE (a versioned base path only); raises when there is none,
    and the failed pair stays marked (its searches answer 503)."""
    from mrl_keras.serving.retrieval import index_versions
    from mrl_keras.serving.service.serving_pair import model_available, open_pair

    served = failed.index.version
    if not getattr(service, "versioned", False) or served is None:
        raise LookupError("the index is not a versioned base path")
    allow = service.config.allow_version_mismatch
    tried = []
    for version in reversed(index_versions.list_versions(service.index_dir)):
        if version >= served:
            continue
        try:
            pair = open_pair(
                service.base_backend,
                service.index_dir,
                version=version,
                allow_version_mismatch=allow,
            )  # verifies every checksum
        except Exception as e:  # broken or retired too: try an older one
            tried.append(f"version {version}: {e}")
            continue
        if pair.model_version is not None and not allow:
            ready, state = model_available(pair.backend, pair.model_version)
            if ready is None:
                tried.append(f"version {version}: model version {pair.model_version} is {state}")
                continue
        with service._reload_lock:
            if service.pair is not failed:
                return  # something else switched meanwhile
            service._install(pair)
        logger.warning(
            "fell back from index version %s (%s failed verification) to version %s",
            served,
            name,
            version,
        )
        return
    raise LookupError("; ".join(tried) or f"no index version older than {served}")
