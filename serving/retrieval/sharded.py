"""A sharded index: S independent `AdaptiveIndex` shards, built in parallel processes from
embedding shards (`mrl embed`), searched in one process (a thread per shard) or across
processes (`serving/service/sharded_front.py`), merged exactly.

Layout::

    manifest.json    sealed: format "mrl-sharded-index", model name/version, d, D_s, D_r, total
                     count, and per shard its folder, count, index version and the sha256 of
                     its manifest.json (which binds the shard's files to this index)
    shard-00000/     an index directory (`index.py`) plus `chunks.json` (`chunk_verify.py`)
    ...

With `versioned=True` (what `mrl index build --embeddings-manifest ... --shards S --out BASE`
does) the whole tree is one published version of the versioned index layout, `BASE/<N>/`
(`index_versions.publish_version`: immutable, read-only; `ShardedIndex.load(BASE)` loads the
newest), so all S shards switch together; un-versioned, the tree is built in a hidden sibling
and swapped into place atomically. Each shard is a plain index folder inside it.

Exactness: every shard returns its own top-k (ties broken by id) and `merge_topk` keeps the k
best of the union ordered by (score descending, id ascending). With exact settings (every
leaf, a shortlist of the whole shard, rerank at `D_r`) each item's score is computed from the
same stored row and query as in an unsharded index, so the merged top-k equals the unsharded
top-k item for item.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.atomic_publish import make_temp_dir
from mrl_keras.serving.retrieval.chunk_verify import (
    check_sizes,
    start_background_verify,
    write_chunk_checksums,
)
from mrl_keras.serving.retrieval.embedding_shards import read_embeddings_manifest
from mrl_keras.serving.retrieval.manifest import (
    MANIFEST_NAME,
    IndexIntegrityError,
    check_model_version,
    seal_manifest,
)

__all__ = [
    "SHARDED_FORMAT",
    "ShardedIndex",
    "ShardedRetriever",
    "build_sharded_index",
    "is_sharded_index",
    "merge_topk",
    "read_sharded_manifest",
    "resolve_sharded_dir",
]

SHARDED_FORMAT = "mrl-sharded-index"
VERIFY_MODES = ("fast", "full", "none")


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _assign(entries: list[dict[str, Any]], shards: int) -> list[list[dict[str, Any]]]:
    """Embedding shards -> S groups, largest first onto the lightest group (deterministic)."""
    groups: list[list[dict[str, Any]]] = [[] for _ in range(shards)]
    loads = [0] * shards
    for entry in sorted(entries, key=lambda e: (-e["count"], e["shard"])):
        g = loads.index(min(loads))
        groups[g].append(entry)
        loads[g] += entry["count"]
    return [sorted(g, key=lambda e: e["shard"]) for g in groups]


def _build_one(task: dict[str, Any]) -> dict[str, Any]:
    """One index shard (runs in its own process): read its embedding shards, build, checksum."""
    from mrl_keras.serving.retrieval.embedding_shards import iter_shards
    from mrl_keras.serving.retrieval.index import build_index

    parts = list(
        iter_shards(task["embeddings_dir"], {"shards": task["entries"], "dtype": task["dtype"]})
    )
    ids = np.concatenate([p[0] for p in parts])
    embeddings = np.concatenate([p[1] for p in parts])
    del parts
    out = Path(task["out"])
    build_index(
        out,
        embeddings,
        ids,
        shortlist_dim=task["shortlist_dim"],
        rerank_dim=task["rerank_dim"],
        store_dtype=task["store_dtype"],
        model_name=task["model_name"],
        model_version=task["model_version"],
        scann_options=task["scann_options"],
    )
    write_chunk_checksums(out)
    manifest = json.loads((out / MANIFEST_NAME).read_bytes())
    return {
        "name": out.name,
        "count": int(manifest["count"]),
        "index_version": manifest["index_version"],
        "manifest_sha256": hashlib.sha256((out / MANIFEST_NAME).read_bytes()).hexdigest(),
    }


def build_sharded_index(
    out_dir: str | os.PathLike,
    embeddings_dir: str | os.PathLike,
    *,
    shards: int,
    shortlist_dim: int,
    rerank_dim: int | None = None,
    store_dtype: str = "float32",
    scann_options: dict[str, Any] | None = None,
    model_version: int | None = None,
    processes: int | None = None,
    versioned: bool = False,
) -> Path:
    """Builds `shards` index shards from an embeddings directory, one process each (at most
    `processes` at a time, default `shards`), and publishes the sharded index atomically.

    Raises:
        EmbeddingShardError: a bad embeddings directory (names the file and the problem).
        ValueError: bad arguments (more shards than embedding shards, bad dims, ...).
    """
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"Expected shards >= 1. Received: {shards!r}")
    emb = read_embeddings_manifest(embeddings_dir, model_version=model_version, verify=True)
    entries = [e for e in emb["shards"] if e["count"] > 0]
    if len(entries) < shards:
        raise ValueError(
            f"{Path(embeddings_dir) / MANIFEST_NAME} lists {len(entries)} non-empty embedding "
            f"shards, fewer than --shards {shards}: re-run `mrl embed` with --shards >= {shards}."
        )
    d = int(emb["dim"])
    rerank_dim = d if rerank_dim is None else int(rerank_dim)
    if not 1 <= shortlist_dim <= rerank_dim <= d:
        raise ValueError(
            "Expected 1 <= shortlist_dim <= rerank_dim <= d. Received: "
            f"shortlist_dim={shortlist_dim}, rerank_dim={rerank_dim}, d={d}"
        )
    from mrl_keras.serving.retrieval import index_versions

    out = Path(out_dir).absolute()
    if versioned:
        if (out / MANIFEST_NAME).is_file():
            raise ValueError(
                f"Expected a base path for a versioned build, but {str(out)!r} is an index itself."
            )
        out.mkdir(parents=True, exist_ok=True)
        index_versions.remove_stale_build_temporaries(out)
        tmp = Path(make_temp_dir(out, f"{index_versions.BUILD_TMP_PREFIX}{os.getpid()}-"))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(make_temp_dir(out.parent, f".{out.name}.tmp-{os.getpid()}-"))
    try:
        tasks = [
            {
                "out": str(tmp / shard_name(i)),
                "embeddings_dir": str(embeddings_dir),
                "entries": group,
                "dtype": emb["dtype"],
                "shortlist_dim": int(shortlist_dim),
                "rerank_dim": rerank_dim,
                "store_dtype": store_dtype,
                "model_name": emb["model_name"],
                "model_version": emb["model_version"],
                "scann_options": scann_options,
            }
            for i, group in enumerate(_assign(entries, shards))
        ]
        workers = min(shards, processes or shards)
        if workers == 1:
            summaries = [_build_one(t) for t in tasks]
        else:
            with ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            ) as pool:
                summaries = list(pool.map(_build_one, tasks))
        content = hashlib.sha256(
            json.dumps([s["index_version"] for s in summaries]).encode()
        ).hexdigest()
        manifest = {
            "format": SHARDED_FORMAT,
            "format_version": 1,
            "index_version": content[:16],
            "model_name": emb["model_name"],
            "model_version": emb["model_version"],
            "embedding_dim": d,
            "shortlist_dim": int(shortlist_dim),
            "rerank_dim": rerank_dim,
            "store_dtype": store_dtype,
            "count": int(sum(s["count"] for s in summaries)),
            "num_shards": shards,
            "shards": summaries,
            "embeddings": {
                "path": str(Path(embeddings_dir).absolute()),
                "manifest_sha256": emb["manifest_sha256"],
            },
        }

        def seal(version: int | None) -> None:
            sealed = manifest if version is None else dict(manifest, version=version)
            (tmp / MANIFEST_NAME).write_bytes(seal_manifest(sealed))

        out = index_versions.publish_build(out, tmp, seal, versioned=versioned)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resolve_sharded_dir(path: str | os.PathLike) -> Path:
    """A sharded index folder, or the newest version of a versioned base path holding them."""
    from mrl_keras.serving.retrieval import index_versions

    if (Path(path) / MANIFEST_NAME).is_file():
        return Path(path)
    try:
        return index_versions.resolve_index_dir(path)[0]
    except FileNotFoundError as e:
        raise IndexIntegrityError(str(e)) from e


def is_sharded_index(path: str | os.PathLike) -> bool:
    try:
        folder = resolve_sharded_dir(path)
        return json.loads((folder / MANIFEST_NAME).read_bytes()).get("format") == SHARDED_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_sharded_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a sharded index's manifest (format and self-checksum)."""
    file = Path(path) / MANIFEST_NAME
    try:
        raw = file.read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexIntegrityError(f"{file}: cannot read a sharded index manifest ({e}).") from e
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDED_FORMAT:
        raise IndexIntegrityError(f"{file}: not a sharded index (format != {SHARDED_FORMAT!r}).")
    if seal_manifest(manifest) != raw:
        raise IndexIntegrityError(f"{file}: its checksum does not match its content.")
    return manifest


class ShardedIndex:
    """All shards of a sharded index, loaded. Attributes: `path`, `manifest`, `shards` (a list of
    `AdaptiveIndex`), `count`, `index_version`, `model_version`, the dims."""

    def __init__(self, path: Path, manifest: dict[str, Any], shards: list[Any]):
        self.path, self.manifest, self.shards = path, manifest, shards
        self.count = int(manifest["count"])
        self.index_version = manifest["index_version"]
        self.model_name = manifest.get("model_name")
        self.model_version = manifest.get("model_version")
        self.embedding_dim = int(manifest["embedding_dim"])
        self.shortlist_dim = int(manifest["shortlist_dim"])
        self.rerank_dim = int(manifest["rerank_dim"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        verify: str = "fast",
        model_version: int | None = None,
        allow_version_mismatch: bool = False,
    ) -> ShardedIndex:
        """Loads every shard.

        Args:
            verify: "fast" (default): manifests' self-checksums, each shard's manifest against
                the sharded manifest, every file's size (`chunk_verify.check_sizes`); then call
                `verify_in_background()` for the chunk hashes. "full": every file's sha256 now.
                "none": manifests only.
            model_version: the served model version; refused if it differs (see `index.py`).

        Raises:
            IndexIntegrityError: naming the shard folder or file and the problem.
            ModelVersionMismatchError: see `model_version`.
        """
        from mrl_keras.serving.retrieval.index import AdaptiveIndex

        if verify not in VERIFY_MODES:
            raise ValueError(f"Expected verify in {VERIFY_MODES}. Received: {verify!r}")
        root = resolve_sharded_dir(path)
        manifest = read_sharded_manifest(root)
        check_model_version(manifest, model_version, allow_mismatch=allow_version_mismatch)
        shards = []
        for entry in manifest["shards"]:
            shard_dir = root / entry["name"]
            file = shard_dir / MANIFEST_NAME
            if not file.is_file():
                raise IndexIntegrityError(f"{shard_dir}: shard {entry['name']} is missing.")
            if hashlib.sha256(file.read_bytes()).hexdigest() != entry["manifest_sha256"]:
                raise IndexIntegrityError(
                    f"{file}: not the shard this sharded index was built with (manifest sha256 differs)."
                )
            if verify == "fast":
                check_sizes(shard_dir)
            shards.append(
                AdaptiveIndex.load(
                    shard_dir,
                    verify=verify == "full",
                    model_version=model_version,
                    allow_version_mismatch=allow_version_mismatch,
                )
            )
        return cls(root, manifest, shards)

    def verify_in_background(self, on_error):
        """Starts hashing every chunk of every shard on a daemon thread (`chunk_verify`);
        returns (thread, stop event)."""
        return start_background_verify([s.path for s in self.shards], on_error)


def merge_topk(
    ids: list[np.ndarray], scores: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact merge of per-shard top-k lists: `(n, k_i)` ids and scores per shard -> `(n, k)`,
    ordered by score descending then id ascending; unfilled slots (score -inf) go last."""
    all_ids = np.concatenate(ids, axis=1)
    all_scores = np.concatenate(scores, axis=1).astype(np.float32)
    n, width = all_scores.shape
    k = min(k, width)
    out_ids = np.empty((n, k), dtype=all_ids.dtype)
    out_scores = np.empty((n, k), dtype=np.float32)
    for q in range(n):
        order = np.lexsort((all_ids[q], -all_scores[q]))[:k]
        out_ids[q], out_scores[q] = all_ids[q, order], all_scores[q, order]
    return out_ids, out_scores


class ShardedRetriever:
    """Searches every shard on its own thread and merges exactly.

    Args:
        index: a `ShardedIndex`.
        backend: a `ModelBackend` for `search(inputs)` (one embed call per batch, shared by all
            shards).
    """

    def __init__(self, index: ShardedIndex, backend: Any = None):
        from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever

        self.index, self.backend = index, backend
        self.retrievers = [AdaptiveRetriever(s) for s in index.shards]
        self._pool = ThreadPoolExecutor(len(self.retrievers), thread_name_prefix="mrl-shard")

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def _shard_search(
        self, retriever, embeddings, k, exact, shortlist_size, rerank_dim, funnel, leaves, reorder
    ):
        shard = retriever.index
        kk = min(k, shard.count)
        if exact:
            size, leaves = shard.count, int(shard.scann_options.get("num_leaves", 1))
            rerank_dim, funnel = shard.rerank_dim if funnel is None else rerank_dim, funnel
            reorder = shard.count
        else:
            size = None if shortlist_size is None else max(kk, min(shortlist_size, shard.count))
            if reorder is not None:  # a shard holds `count` at most; never below its shortlist
                reorder = max(size or 0, min(reorder, shard.count))
        res = retriever.search_embeddings(
            embeddings,
            kk,
            None,
            size,
            rerank_dim,
            funnel,
            leaves_to_search=leaves,
            shortlist_reorder=reorder,
        )
        # Each shard's own top-k in the merge order (a shard cut at a tie keeps the lower ids).
        return merge_topk([res.ids], [res.scores], kk)

    def search_embeddings(
        self,
        embeddings: Any,
        k: int = 10,
        *,
        exact: bool = False,
        shortlist_size: int | None = None,
        rerank_dim: int | None = None,
        funnel: Any = None,
        leaves_to_search: int | None = None,
        shortlist_reorder: int | None = None,
    ):
        """Top-k over all shards for query embeddings; a `SearchResult`. `exact=True`: every
        leaf and the whole shard shortlisted and reordered, reranked at `D_r`.
        `shortlist_reorder` (see `AdaptiveRetriever.search_embeddings`) is capped at each
        shard's size, like `shortlist_size`."""
        from mrl_keras.serving.retrieval.retriever import SearchResult

        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.index.count:
            raise ValueError(
                f"Expected 1 <= k <= {self.index.count} (the corpus size). Received: k={k!r}"
            )
        if shortlist_reorder is not None and (
            not isinstance(shortlist_reorder, (int, np.integer))
            or isinstance(shortlist_reorder, bool)
            or shortlist_reorder < 1
        ):
            raise ValueError(
                "Expected shortlist_reorder to be a positive int (at least the shortlist size). "
                f"Received: shortlist_reorder={shortlist_reorder!r}"
            )
        size = shortlist_size
        if shortlist_reorder is not None and isinstance(size, int) and shortlist_reorder < size:
            raise ValueError(
                f"Expected shortlist_size={size} <= shortlist_reorder. "
                f"Received: shortlist_reorder={shortlist_reorder}"
            )
        futures = [
            self._pool.submit(
                self._shard_search,
                r,
                embeddings,
                k,
                exact,
                shortlist_size,
                rerank_dim,
                funnel,
                leaves_to_search,
                None if shortlist_reorder is None else int(shortlist_reorder),
            )
            for r in self.retrievers
        ]
        parts = [f.result() for f in futures]
        ids, scores = merge_topk([p[0] for p in parts], [p[1] for p in parts], k)
        return SearchResult(
            ids=ids, scores=scores, model_version=None, index_version=self.index.index_version
        )

    def search(self, inputs: Any, k: int = 10, **kwargs: Any):
        """Embeds `inputs` once (at `D_r`) with the backend, then `search_embeddings`."""
        if self.backend is None:
            raise ValueError(
                "This retriever has no backend: use search_embeddings, or pass a backend."
            )
        result = self.backend.embed(inputs, self.index.rerank_dim)
        check_model_version(self.index.manifest, getattr(result, "served_version", None))
        return self.search_embeddings(result.embeddings, k, **kwargs)
