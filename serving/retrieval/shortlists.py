"""Several shortlist dims in one index, sharing its rerank store.

`add_shortlists(index_dir, [16, 64])` builds a ScaNN searcher over the re-normalised prefix
`z[:m]` of the index's own store (decoded; `m <= D_r`) for each new `m`, and publishes the index
with them as a new version (`scann_ds{m}/`, listed with their ScaNN settings in the manifest's
`shortlists`; the store, norms and ids are hard links of the old version's). A request (or the
tuner, or the tuned `search_defaults`) then picks `shortlist_dim` among `shortlist_dims(index)`;
the extra searchers are loaded on first use.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize
from mrl_keras.serving.retrieval.scann_builder import (
    build_searcher,
    require_scann,
    resolve_scann_options,
)
from mrl_keras.serving.retrieval.store_int8 import decode_rows, load_scales

__all__ = [
    "SHORTLIST_PREFIX",
    "add_shortlists",
    "search_shortlist",
    "shortlist_dims",
    "shortlist_options",
]

SHORTLIST_PREFIX = "scann_ds"
_lock = threading.Lock()


def shortlist_dims(index) -> tuple[int, ...]:
    """Every shortlist dim of the index, ascending (its primary `D_s` and the added ones)."""
    extra = {int(m) for m in (index.manifest.get("shortlists") or {})}
    return tuple(sorted(extra | {index.shortlist_dim}))


def shortlist_options(index, dim: int) -> dict[str, Any]:
    """The ScaNN settings of the searcher over `z[:dim]`."""
    if dim == index.shortlist_dim:
        return index.scann_options
    try:
        return dict(index.manifest["shortlists"][str(dim)])
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown shortlist_dim={dim}: this index shortlists at {list(shortlist_dims(index))}"
            " (add one with mrl_keras.serving.retrieval.shortlists.add_shortlists)."
        ) from None


def _searcher(index, dim: int):
    if dim == index.shortlist_dim:
        return index.searcher
    shortlist_options(index, dim)  # raises for an unknown dim
    cache = index.__dict__.setdefault("_extra_searchers", {})
    with _lock:
        if dim not in cache:
            searcher = require_scann().load_searcher(
                str(Path(index.path) / f"{SHORTLIST_PREFIX}{dim}")
            )
            if index.search_threads is not None and index.search_threads > 1:
                searcher.set_num_threads(int(index.search_threads) - 1)
            cache[dim] = searcher
    return cache[dim]


def search_shortlist(
    index, dim: int, queries: np.ndarray, size: int, leaves_to_search=None, reorder=None
):
    """`AdaptiveIndex.shortlist` with the searcher over `z[:dim]` (any of `shortlist_dims`);
    `reorder`: candidates re-scored exactly at `dim` (default as `AdaptiveIndex.shortlist`)."""
    if dim == index.shortlist_dim:
        return index.shortlist(queries, size, leaves_to_search, reorder)
    searcher, options = _searcher(index, dim), shortlist_options(index, dim)
    reorder = max(size, int(options["reorder_num_neighbors"] if reorder is None else reorder))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    parallel = queries.shape[0] >= 64 and index.search_threads != 1
    search = searcher.search_batched_parallel if parallel else searcher.search_batched
    extra = {} if leaves_to_search is None else {"leaves_to_search": int(leaves_to_search)}
    rows, scores = search(
        queries,
        final_num_neighbors=size,
        pre_reorder_num_neighbors=min(reorder, index.count),
        **extra,
    )
    rows, scores = np.asarray(rows, np.int64), np.asarray(scores, np.float32)
    missing = np.isnan(scores)
    if missing.any():
        scores = np.where(missing, -np.inf, scores).astype(np.float32)
        rows = np.where(missing, 0, rows)
    return rows, scores


def add_shortlists(
    index_dir: str | os.PathLike,
    dims: Sequence[int],
    *,
    scann_options: dict[str, Any] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Publishes the index with ScaNN searchers over `z[:m]` for each new `m` in `dims`.

    Args:
        index_dir: an index folder or a versioned base path (its newest version).
        dims: shortlist dims to add, each in `[1, D_r]` and not the index's already.
        scann_options: overrides of the default ScaNN settings of each new searcher.
        out_dir: as in `tuned_index.publish_tuned` (default: the next version, or in place).

    Returns:
        The published folder.

    Raises:
        ValueError / TypeError: bad or duplicate dims.
    """
    from mrl_keras.serving.retrieval.files import sha256_file
    from mrl_keras.serving.retrieval.index import AdaptiveIndex
    from mrl_keras.serving.retrieval.tuned_index import publish_derived

    index = AdaptiveIndex.load(index_dir, verify=False)
    have = set(shortlist_dims(index))
    wanted = []
    for m in dims:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
            raise TypeError(f"Expected int shortlist dims. Received: {m!r}")
        if not 1 <= int(m) <= index.rerank_dim:
            raise ValueError(
                f"Expected shortlist dims within [1, {index.rerank_dim}] (the rerank dim). "
                f"Received: {int(m)}"
            )
        if int(m) in have or int(m) in wanted:
            raise ValueError(f"shortlist_dim={int(m)} exists already in {sorted(have)}.")
        wanted.append(int(m))
    if not wanted:
        raise ValueError("Expected at least one shortlist dim to add.")
    scales = load_scales(index.path, index.store_dtype, index.rerank_dim)
    shortlists = dict(index.manifest.get("shortlists") or {})
    extra_files: dict[str, str] = {}
    staging = Path(tempfile.mkdtemp(prefix=".shortlists-", dir=Path(index.path).parent))
    try:
        for m in wanted:
            data = np.empty((index.count, m), np.float32)
            for s in range(0, index.count, 65536):
                data[s : s + 65536] = l2_normalize(
                    decode_rows(
                        index.store[s : s + 65536, :m], None if scales is None else scales[:m]
                    )
                )
            options = resolve_scann_options(index.count, m, scann_options)
            searcher = build_searcher(data, options)
            folder = staging / f"{SHORTLIST_PREFIX}{m}"
            folder.mkdir()
            searcher.serialize(str(folder), relative_path=True)
            shortlists[str(m)] = options
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    extra_files[p.relative_to(staging).as_posix()] = sha256_file(p)
        index.close()
        return publish_derived(
            index_dir,
            {"shortlists": shortlists},
            extra_root=staging,
            extra_files=extra_files,
            out_dir=out_dir,
        )
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
