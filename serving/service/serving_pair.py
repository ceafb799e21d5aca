"""What the search service serves: a (model version, index version) pair, and how it picks one.

A `ServingPair` is immutable: the loaded index, its retriever, and the backend pinned to the
model version that index was built by (`ModelBackend.pinned`). Each request reads the
service's current pair once and uses only it, so a switch never changes the pair under a
request that has started: in-flight requests finish on the pair they began with, and the old
index (its lease, its memory map) and pinned model are released when the last of them returns.

`newest_pair` walks the versions of an index base path from the newest down and opens the
first whose model version the backend reports AVAILABLE; an index built without a model
version (raw embeddings), or a service told to allow version mismatches, uses the backend
as it is.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.retrieval import index_versions
from mrl_keras.serving.retrieval.index import AdaptiveIndex
from mrl_keras.serving.retrieval.manifest import read_manifest
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever

__all__ = ["PairNotReady", "ServingPair", "model_available", "newest_pair", "open_pair"]

logger = logging.getLogger("mrl_keras.serving.service")


class PairNotReady(Exception):
    """No newer index version has its model version AVAILABLE on the backend yet."""


@dataclasses.dataclass(frozen=True)
class ServingPair:
    """One (model version, index version) pair: `index`, `retriever`, `backend` (pinned to
    `model_version` when the index names one), `cascade` (over that backend)."""

    index: AdaptiveIndex
    retriever: AdaptiveRetriever
    backend: Any
    cascade: CascadeClassifier
    model_version: int | None

    @property
    def index_version(self) -> str:
        return self.index.index_version

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "index_version": self.index.index_version,
            "index_path": str(self.index.path),
        }


def model_available(backend: Any, version: int | None) -> tuple[Any, str]:
    """`(backend pinned to version, or None unless it reports AVAILABLE; the state seen)`."""
    try:
        target = backend if version is None else backend.pinned(version)
        status = target.status()
    except BackendError as e:
        return None, e.code
    if version is not None and status.version != version:
        return None, f"serves version {status.version}"
    return (target if status.state == "AVAILABLE" else None), status.state


def open_pair(
    backend: Any,
    index_dir: str | Path,
    *,
    version: int | None = None,
    allow_version_mismatch: bool = False,
    pinned_backend: Any = None,
) -> ServingPair:
    """Loads the index (`version` of a base path, or its newest, or a legacy folder) and pins
    `backend` to the model version it was built by.

    Raises:
        IndexIntegrityError: the index is corrupted or missing.
        BackendError: the pinned model version cannot be set up (LocalModel: no such folder).
    """
    index = AdaptiveIndex.load(index_dir, version=version, allow_version_mismatch=True)
    built_by = index.model_version
    pinned = backend
    if built_by is not None and not allow_version_mismatch:
        pinned = pinned_backend or backend.pinned(int(built_by))
    retriever = AdaptiveRetriever(index, allow_version_mismatch=allow_version_mismatch)
    return ServingPair(
        index=index,
        retriever=retriever,
        backend=pinned,
        cascade=CascadeClassifier(pinned),
        model_version=None if built_by is None else int(built_by),
    )


def newest_pair(
    backend: Any,
    index_dir: str | Path,
    *,
    newer_than: int | None = None,
    allow_version_mismatch: bool = False,
) -> ServingPair:
    """The newest index version above `newer_than` whose model version is AVAILABLE.

    Raises:
        PairNotReady: versions newer than `newer_than` exist, none with its model AVAILABLE
            (the message names the newest and the state its model version is in).
        FileNotFoundError: `index_dir` holds no index version.
    """
    versions = index_versions.list_versions(index_dir)
    if not versions:
        raise FileNotFoundError(f"No index versions in {str(index_dir)!r}")
    candidates = [v for v in reversed(versions) if newer_than is None or v > newer_than]
    waiting = []
    for version in candidates:
        try:
            built_by = read_manifest(Path(index_dir) / str(version)).get("model_version")
        except (OSError, ValueError) as e:
            waiting.append(f"index version {version}: {e}")
            continue  # retired meanwhile, or broken: try an older one
        pinned = None
        if built_by is not None and not allow_version_mismatch:
            pinned, state = model_available(backend, int(built_by))
            if pinned is None:
                waiting.append(
                    f"index version {version} needs model version {built_by} (backend: {state})"
                )
                continue
        try:
            pair = open_pair(
                backend,
                index_dir,
                version=version,
                allow_version_mismatch=allow_version_mismatch,
                pinned_backend=pinned,
            )
        except (OSError, ValueError, BackendError) as e:
            waiting.append(f"index version {version}: {e}")
            continue
        if built_by is None or allow_version_mismatch or pair.model_version == int(built_by):
            return pair
        waiting.append(f"index version {version} changed while being opened")
    raise PairNotReady("; ".join(waiting) or "no newer index version")
