"""The adaptive retrieval index: a ScaNN searcher over `z[:D_s]` and a rerank store of `z[:D_r]`.

Directory layout (`format_version` 1)::

    manifest.json        format version, model name/version, d, D_s, D_r, count, ScaNN
                         settings, sha256 of every other file, creation time, self-checksum
    scann/               the serialized ScaNN searcher over the re-normalised prefix z[:D_s]
    rerank.npy           (count, D_r) float32 or float16 raw prefixes z[:D_r] (memory-mapped), or
                         uint16 bfloat16 bit patterns (upper 16 bits of the float32, rounded to
                         nearest even) when `store_dtype` is "bfloat16"
    prefix_norms.npy     (count, len(prefix_norm_dims)) float32 ||z[:m]|| for a few m
    ids.npy              (count,) int64 or unicode ids (no pickle)

Versioned (`build_index(base, ..., versioned=True)`, what `mrl index build --out BASE` does):
each build is published as `base/<next integer version>/`, read-only and never replaced (see
`index_versions.py`), its manifest recording `version`, a fresh `build_id` and
`index_version = "<version>-<build_id>"`; `content_sha256` is the hash of the files alone.
Un-versioned (the legacy layout, the default of `build_index`): the directory is written to a
hidden sibling and swapped into place atomically (`renameat2(RENAME_EXCHANGE)` on Linux), and
`index_version` is the build id.

`AdaptiveIndex.load` resolves the folder once (the newest version of a base path), opens and
share-locks it (a lease that retention respects) and reads every file through that descriptor:
the checksums are those of the bytes it maps, and a load racing any number of builds returns
one build, whole, or raises `IndexIntegrityError`.

Over 400 lines because `build_index` and `AdaptiveIndex.load` must agree on one on-disk
format, version lease and verification; the store codecs, ScaNN builder, files and manifest
live in their own modules.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.atomic_publish import make_temp_dir, process_alive
from mrl_keras.serving.retrieval import index_versions, store_writer
from mrl_keras.serving.retrieval.files import (
    load_embeddings_file,
    load_ids_file,
    normalize_ids,
    sha256_file,
)
from mrl_keras.serving.retrieval.manifest import (
    FORMAT_VERSION,
    IDS_NAME,
    MANIFEST_NAME,
    NORMS_NAME,
    RERANK_NAME,
    SCANN_DIR,
    IndexIntegrityError,
    ModelVersionMismatchError,
    check_model_version,
    parse_manifest,
    read_manifest,
    seal_manifest,
    verify_index,
)
from mrl_keras.serving.retrieval.scann_builder import (
    build_searcher,
    default_scann_options,
    require_scann,
    resolve_scann_options,
)
from mrl_keras.serving.retrieval.store_codecs import STORE_DTYPES, STORE_NUMPY_DTYPES

__all__ = [
    "AdaptiveIndex",
    "IndexIntegrityError",
    "ModelVersionMismatchError",
    "build_index",
    "check_model_version",
    "default_prefix_norm_dims",
    "default_scann_options",
    "load_embeddings_file",
    "load_ids_file",
    "read_manifest",
    "verify_index",
]


_LOAD_ATTEMPTS = 5


def _read_npy(f, mmap: bool) -> np.ndarray:
    """A `.npy` from an open binary file: memory-mapped from that very file, or read."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays are not allowed in an index")
    order = "F" if fortran else "C"
    if not mmap:
        count = int(np.prod(shape)) if shape else 1
        data = np.fromfile(f, dtype=dtype, count=count)
        if data.size != count:
            raise ValueError(f"truncated array: expected {count} items, found {data.size}")
        return data.reshape(shape, order=order)
    return np.memmap(f, dtype=dtype, mode="r", shape=shape, offset=f.tell(), order=order)


def default_prefix_norm_dims(shortlist_dim: int, rerank_dim: int) -> tuple[int, ...]:
    """Prefix dims whose norms the index stores: powers of two from 8, `D_s` and `D_r`."""
    dims = {shortlist_dim, rerank_dim}
    m = 8
    while m < rerank_dim:
        dims.add(m)
        m *= 2
    return tuple(sorted(d for d in dims if 1 <= d <= rerank_dim))


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Removes `.<name>.tmp-<pid>-*` (builds) and `.<name>.load-<pid>-*` (loads) siblings left
    by processes on this host that were killed."""
    for kind in (".tmp-", ".load-"):
        for sibling in out_dir.parent.glob(f".{out_dir.name}{kind}*"):
            try:
                pid = int(sibling.name.rsplit(kind, 1)[1].split("-")[0])
            except ValueError:
                continue
            if not process_alive(pid):
                shutil.rmtree(sibling, ignore_errors=True)


def _searcher_from_bytes(folder: Path, files: dict[str, bytes]):
    """Loads a ScaNN searcher from the given file contents (a private temporary copy: ScaNN
    opens files by path, and an un-versioned index folder can be deleted under a reader)."""
    try:
        tmp = make_temp_dir(folder.parent, f".{folder.name}.load-{os.getpid()}-")
    except OSError:  # a read-only parent: the system's temporary folder
        import tempfile

        tmp = tempfile.mkdtemp(prefix="mrl-index-load-")
    try:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return require_scann().load_searcher(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_index(
    out_dir: str | os.PathLike,
    embeddings: Any,
    ids: Any = None,
    *,
    shortlist_dim: int,
    rerank_dim: int | None = None,
    store_dtype: str = "float32",
    model_name: str | None = None,
    model_version: int | None = None,
    scann_options: dict[str, Any] | None = None,
    prefix_norm_dims: Sequence[int] | None = None,
    progress: bool = False,
    versioned: bool = False,
    keep: int | None = None,
    version: int | None = None,
) -> Path:
    """Builds an adaptive retrieval index directory from full embeddings.

    The ScaNN searcher (tree + asymmetric hashing + reorder) indexes the re-normalised prefix
    `z[:shortlist_dim]`; the rerank store keeps the raw prefix `z[:rerank_dim]` (memory-mappable)
    and the norms of a few prefixes so that reranking re-normalises cheaply. Embeddings are read
    in chunks, so a memory-mapped `.npy` larger than RAM is fine for the store (the shortlist
    prefix is held in memory for ScaNN's training).

    Args:
        out_dir: path of the index directory (replaced atomically if it exists), or with
            `versioned` the base path that receives the next integer version.
        embeddings: array-like `(count, d)` of full embeddings (e.g. `embed_{d}` outputs).
        ids: optional `(count,)` unique integer or string ids. Defaults to `0..count-1`.
        shortlist_dim: int. `D_s`, the prefix ScaNN indexes.
        rerank_dim: int. `D_r`, the prefix the rerank store keeps. Defaults to `d`.
        store_dtype: `"float32"`, `"float16"` or `"bfloat16"` (either halves the store's
            memory; bfloat16 is stored as uint16 bit patterns and widens faster at rerank).
        model_name: name of the model that produced the embeddings (recorded).
        model_version: version of that model; loading refuses a backend serving another one.
        scann_options: overrides of `default_scann_options(count, shortlist_dim)`.
        prefix_norm_dims: prefix dims whose norms are stored. Defaults to powers of two, `D_s`
            and `D_r`.
        progress: show a progress bar on stderr.
        versioned: publish `out_dir/<next integer version>/` (immutable, read-only files)
            instead of replacing `out_dir`.
        keep: with `versioned`, then remove versions older than the newest `keep` that no
            process has loaded (`index_versions.retire_versions`). None keeps all.
        version: with `versioned`, publish exactly this version (it must not exist yet).

    Returns:
        The `Path` of the published index directory (`out_dir/<version>` when versioned).

    Raises:
        ValueError: bad shapes, dims, dtypes, ids, non-finite embeddings or ScaNN options.

    Example:

    >>> from mrl_keras.serving import AdaptiveIndex, build_index
    >>> build_index("/tmp/idx", embeddings, shortlist_dim=16)        # doctest: +SKIP
    >>> index = AdaptiveIndex.load("/tmp/idx")                        # doctest: +SKIP
    """
    if not hasattr(embeddings, "shape") or not hasattr(embeddings, "dtype"):
        embeddings = np.asarray(embeddings)
    if len(embeddings.shape) != 2:
        raise ValueError(
            f"Expected embeddings of shape (count, d). Received: shape {tuple(embeddings.shape)}"
        )
    if np.dtype(embeddings.dtype).kind not in "fiu":
        raise TypeError(f"Expected numeric embeddings. Received dtype {embeddings.dtype}")
    count, d = int(embeddings.shape[0]), int(embeddings.shape[1])
    if count < 1:
        raise ValueError("Expected at least one embedding. Received: an empty array")
    rerank_dim = d if rerank_dim is None else rerank_dim
    for name, value in (("shortlist_dim", shortlist_dim), ("rerank_dim", rerank_dim)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"Expected an int {name}. Received: {value!r}")
    if not 1 <= shortlist_dim <= rerank_dim <= d:
        raise ValueError(
            "Expected 1 <= shortlist_dim <= rerank_dim <= d. Received: "
            f"shortlist_dim={shortlist_dim}, rerank_dim={rerank_dim}, d={d}"
        )
    if store_dtype not in STORE_DTYPES:
        raise ValueError(f"Expected store_dtype in {STORE_DTYPES}. Received: {store_dtype!r}")
    ids = normalize_ids(ids, count)
    norm_dims = tuple(
        sorted(
            set(
                default_prefix_norm_dims(shortlist_dim, rerank_dim)
                if prefix_norm_dims is None
                else [int(m) for m in prefix_norm_dims]
            )
        )
    )
    if not norm_dims or norm_dims[0] < 1 or norm_dims[-1] > rerank_dim:
        raise ValueError(
            f"Expected prefix_norm_dims within [1, rerank_dim={rerank_dim}]. Received: {norm_dims}"
        )
    options = resolve_scann_options(count, shortlist_dim, scann_options)
    if keep is not None and (
        not versioned or isinstance(keep, bool) or not isinstance(keep, int) or keep < 1
    ):
        raise ValueError(
            f"Expected keep to be None or an int >= 1 with versioned=True. Received: keep={keep!r}"
            f", versioned={versioned}"
        )

    out_dir = Path(out_dir).absolute()
    if version is not None and (
        not versioned or isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ValueError(
            f"Expected version to be None or an int >= 1 with versioned=True. Received: "
            f"version={version!r}, versioned={versioned}"
        )
    if versioned:
        if (out_dir / MANIFEST_NAME).is_file():
            raise ValueError(
                f"Expected a base path for a versioned build, but {str(out_dir)!r} is an "
                "un-versioned index itself. Give another --out (e.g. indexes/NAME), or build "
                "un-versioned (--unversioned) to replace it."
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        index_versions.remove_stale_build_temporaries(out_dir)
        tmp_dir = Path(make_temp_dir(out_dir, f"{index_versions.BUILD_TMP_PREFIX}{os.getpid()}-"))
    else:
        if (out_dir / MANIFEST_NAME).is_file():
            try:
                published = read_manifest(out_dir).get("version")
            except IndexIntegrityError:
                published = None  # a broken legacy index: replacing it is the fix
            if published is not None:
                raise ValueError(
                    f"{str(out_dir)!r} is index version {published} of a versioned base path; "
                    "published versions are immutable. Build into the base path "
                    f"({str(out_dir.parent)!r}) for the next version."
                )
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out_dir)
        tmp_dir = Path(make_temp_dir(out_dir.parent, f".{out_dir.name}.tmp-{os.getpid()}-"))
    try:
        shortlist = store_writer.shortlist_prefixes(embeddings, shortlist_dim)
        if progress:
            print(f"index: building ScaNN over {count} x {shortlist_dim} ...", file=sys.stderr)
        # ScaNN's build releases the GIL: it runs in a thread while the store is written (at 1M x
        # 2048 this saves about a third of the wall time on 2 cores). If the store pass raises,
        # leaving the executor waits for the build (it cannot be cancelled), then re-raises.
        with ThreadPoolExecutor(1) as pool:
            scann_build = pool.submit(build_searcher, shortlist, options)
            store_sha256, norms = store_writer.write_store(
                tmp_dir / RERANK_NAME,
                embeddings,
                rerank_dim=rerank_dim,
                store_dtype=store_dtype,
                norm_dims=norm_dims,
                progress=progress,
            )
            searcher = scann_build.result()
        np.save(tmp_dir / NORMS_NAME, norms)
        np.save(tmp_dir / IDS_NAME, ids)
        (tmp_dir / SCANN_DIR).mkdir()
        searcher.serialize(str(tmp_dir / SCANN_DIR), relative_path=True)
        del searcher, shortlist

        known = {RERANK_NAME: store_sha256}  # hashed while written: not read back
        files = {
            name: known.get(name) or sha256_file(p)
            for p in sorted(tmp_dir.rglob("*"))
            if p.is_file()
            for name in [p.relative_to(tmp_dir).as_posix()]
        }
        content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        build_id = index_versions.new_build_id()
        manifest = {
            "format_version": FORMAT_VERSION,
            "index_version": build_id,
            "version": None,
            "build_id": build_id,
            "content_sha256": content,
            "model_name": model_name,
            "model_version": None if model_version is None else int(model_version),
            "embedding_dim": d,
            "shortlist_dim": int(shortlist_dim),
            "rerank_dim": int(rerank_dim),
            "count": count,
            "store_dtype": store_dtype,
            "id_type": "int" if ids.dtype.kind == "i" else "str",
            "prefix_norm_dims": list(norm_dims),
            "similarity": "dot product of re-normalised prefixes (cosine)",
            "scann": options,
            "files": files,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
        }

        def seal(version: int | None) -> None:
            if version is not None:
                manifest.update(version=version, index_version=f"{version}-{build_id}")
            (tmp_dir / MANIFEST_NAME).write_bytes(seal_manifest(manifest))

        published = index_versions.publish_build(
            out_dir, tmp_dir, seal, versioned=versioned, version=version
        )
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if versioned and keep is not None:
        removed, leased = index_versions.retire_versions(out_dir, keep)
        if progress and (removed or leased):
            print(
                f"index: retired versions {removed}; kept {leased} (loaded by a process)",
                file=sys.stderr,
            )
    return published


class AdaptiveIndex:
    """A loaded adaptive retrieval index (see `build_index`).

    Attributes: `path`, `manifest`, `searcher` (ScaNN), `store` (memory-mapped `(count, D_r)`),
    `prefix_norms` `(count, len(prefix_norm_dims))`, `prefix_norm_dims`, `ids`, `count`,
    `embedding_dim`, `shortlist_dim`, `rerank_dim`, `model_name`, `model_version`,
    `index_version`, `version` (the integer version of a versioned index, else None),
    `build_id`, `search_threads` (see `set_search_threads`). A loaded index holds a lease on
    its folder (retention never removes it) until `close()` or garbage collection.

    Example:

    >>> index = mrl_keras.serving.AdaptiveIndex.load("/tmp/idx")   # doctest: +SKIP
    """

    def __init__(self, path, manifest, searcher, store, prefix_norms, ids, lease=None):
        self.path = Path(path)
        self._lease = lease
        self.version = manifest.get("version")
        self.build_id = manifest.get("build_id")
        self.manifest = manifest
        self.searcher = searcher
        self.store = store
        self.prefix_norms = prefix_norms
        self.ids = ids
        self.count = int(manifest["count"])
        self.embedding_dim = int(manifest["embedding_dim"])
        self.shortlist_dim = int(manifest["shortlist_dim"])
        self.rerank_dim = int(manifest["rerank_dim"])
        self.prefix_norm_dims = tuple(int(m) for m in manifest["prefix_norm_dims"])
        self.model_name = manifest.get("model_name")
        self.model_version = manifest.get("model_version")
        self.index_version = manifest["index_version"]
        self.scann_options = dict(manifest["scann"])
        self.store_dtype = str(manifest.get("store_dtype", store.dtype.name))
        self._norm_column = {m: i for i, m in enumerate(self.prefix_norm_dims)}
        self.search_threads: int | None = None

    def set_search_threads(self, threads: int | None) -> None:
        """Threads the ScaNN shortlist of a batch may use.

        `None` (the default) lets ScaNN's batched search use its own pool (all cores) for
        batches of 64 queries or more. `1` searches on the calling thread only (what a
        benchmark pinned to one core, or a server running one worker per core, wants).
        `t > 1` gives ScaNN's pool `t - 1` threads, the calling thread being the t-th (measured:
        a pool of one keeps two cores busy). Reranking runs on the calling thread (NumPy; BLAS
        follows `OPENBLAS_NUM_THREADS`).

        Raises:
            ValueError: `threads` is not None or a positive int.
        """
        if threads is not None and (
            not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1
        ):
            raise ValueError(f"Expected threads to be None or an int >= 1. Received: {threads!r}")
        if threads is not None and threads > 1:
            self.searcher.set_num_threads(int(threads) - 1)
        self.search_threads = None if threads is None else int(threads)

    @classmethod
    def load(
        cls,
        index_dir: str | os.PathLike,
        *,
        verify: bool = True,
        model_version: int | None = None,
        allow_version_mismatch: bool = False,
        mmap: bool = True,
        version: int | None = None,
    ) -> AdaptiveIndex:
        """Loads an index directory, or the newest (or `version`) of an index base path.

        The folder is resolved once, opened and share-locked (the lease retention respects),
        and every file is read through that descriptor; the checksums are computed on the
        bytes that are then used (the rerank store is memory-mapped from the descriptor that
        was hashed). A build that publishes, swaps or retires meanwhile cannot mix into the
        result: the load returns one build whole, resolves again (at most a few times) when
        its folder was swapped away or retired under it, or raises.

        Args:
            index_dir: the directory `build_index` wrote, or a versioned base path.
            verify: check the sha256 of every file (reads every byte once).
            model_version: the version the backend serves; refused if it differs from the
                index's, unless `allow_version_mismatch`.
            allow_version_mismatch: accept an index built by another model version.
            mmap: memory-map the rerank store (else read it into RAM).
            version: with a base path, load this version instead of the newest.

        Raises:
            IndexIntegrityError: missing files, checksum mismatch, unknown format version, no
                such version, or the folder kept changing under the loader.
            ModelVersionMismatchError: see `model_version`.
        """
        last: Exception | None = None
        for _ in range(_LOAD_ATTEMPTS):
            try:
                folder, versioned = index_versions.resolve_index_dir(index_dir, version)
            except FileNotFoundError as e:
                if (Path(index_dir) / MANIFEST_NAME).exists():
                    raise IndexIntegrityError(str(e)) from e
                raise IndexIntegrityError(
                    f"Not an index directory (no {MANIFEST_NAME}): {str(Path(index_dir))!r}. {e}"
                ) from e
            try:
                lease = index_versions.IndexLease.acquire(folder)
            except index_versions.LeaseLost as e:
                last = e
                continue
            try:
                return cls._load_leased(
                    folder, lease, verify, model_version, allow_version_mismatch, mmap, versioned
                )
            except ModelVersionMismatchError:
                lease.release()
                raise
            except Exception as e:
                moved = not lease.still_at_path()
                lease.release()
                if not moved:
                    raise
                last = e  # swapped away or retired while loading: resolve again
        raise IndexIntegrityError(
            f"Index {str(Path(index_dir))!r} changed under the loader {_LOAD_ATTEMPTS} times in a "
            f"row (builds publishing or retiring right now); retry. Last: {last}"
        )

    @classmethod
    def _load_leased(
        cls,
        folder: Path,
        lease: index_versions.IndexLease,
        verify: bool,
        model_version: int | None,
        allow_version_mismatch: bool,
        mmap: bool,
        versioned: bool,
    ) -> AdaptiveIndex:
        try:
            raw = lease.read_bytes(MANIFEST_NAME)
        except FileNotFoundError as e:
            raise IndexIntegrityError(
                f"Not an index directory (no {MANIFEST_NAME}): {str(folder)!r}"
            ) from e
        manifest = parse_manifest(raw, folder / MANIFEST_NAME)
        check_model_version(manifest, model_version, allow_mismatch=allow_version_mismatch)
        files = manifest["files"]
        for name in (RERANK_NAME, NORMS_NAME, IDS_NAME):
            if name not in files:
                raise IndexIntegrityError(f"Index {str(folder)!r}: its manifest lists no {name}.")

        def check(name: str, digest: str) -> None:
            if digest != files[name]:
                raise IndexIntegrityError(
                    f"Index {str(folder)!r}: checksum mismatch for {name} (expected sha256 "
                    f"{files[name][:12]}..., found {digest[:12]}...). Rebuild the index."
                )

        try:
            arrays = {}
            for name in (NORMS_NAME, IDS_NAME):
                data = lease.read_bytes(name)
                if verify:
                    check(name, hashlib.sha256(data).hexdigest())
                arrays[name] = np.load(io.BytesIO(data), allow_pickle=False)
            with lease.open_file(RERANK_NAME) as f:
                if verify:
                    digest = hashlib.sha256()
                    for block in iter(lambda: f.read(1 << 22), b""):
                        digest.update(block)
                    check(RERANK_NAME, digest.hexdigest())
                    f.seek(0)
                store = _read_npy(f, mmap)
            scann_files = {}
            for name in sorted(files):
                if name in (RERANK_NAME, NORMS_NAME, IDS_NAME) or (versioned and not verify):
                    continue
                data = lease.read_bytes(name)
                if verify:
                    check(name, hashlib.sha256(data).hexdigest())
                if not versioned and name.startswith(SCANN_DIR + "/"):
                    scann_files[name[len(SCANN_DIR) + 1 :]] = data
            if versioned:  # immutable and leased: ScaNN reads the very files that were hashed
                searcher = require_scann().load_searcher(lease.open_path(SCANN_DIR))
            else:  # may be swapped away and deleted meanwhile: ScaNN reads the bytes hashed
                searcher = _searcher_from_bytes(folder, scann_files)
        except FileNotFoundError as e:
            raise IndexIntegrityError(f"Index {str(folder)!r} is missing {e.filename}.") from e
        except (OSError, ValueError, RuntimeError) as e:
            if isinstance(e, IndexIntegrityError):
                raise
            raise IndexIntegrityError(f"Cannot load index {str(folder)!r}: {e}") from e
        norms, ids = arrays[NORMS_NAME], arrays[IDS_NAME]
        count, rerank_dim = int(manifest["count"]), int(manifest["rerank_dim"])
        if store.shape != (count, rerank_dim) or ids.shape != (count,) or norms.shape[0] != count:
            raise IndexIntegrityError(
                f"Index {str(folder)!r}: array shapes disagree with the manifest."
            )
        store_dtype = manifest.get("store_dtype", "float32")
        if STORE_NUMPY_DTYPES.get(store_dtype) != store.dtype.name:
            raise IndexIntegrityError(
                f"Index {str(folder)!r}: rerank store dtype {store.dtype.name} disagrees with "
                f"the manifest's store_dtype {store_dtype!r} (expected one of {STORE_DTYPES})."
            )
        return cls(folder, manifest, searcher, store, norms, ids, lease)

    def close(self) -> None:
        """Releases the lease on the index folder (retention may then remove it)."""
        if self._lease is not None:
            self._lease.release()

    def norm_column(self, dim: int) -> int | None:
        """Column of `prefix_norms` holding `||z[:dim]||`, or None when not stored."""
        return self._norm_column.get(dim)

    def shortlist(
        self,
        queries: np.ndarray,
        size: int,
        leaves_to_search: int | None = None,
        reorder: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """ScaNN search of re-normalised `(n, D_s)` queries.

        Args:
            queries: `(n, D_s)` re-normalised queries.
            size: shortlist size per query.
            leaves_to_search: ScaNN leaves searched per query (more: better recall, slower).
                Defaults to the index's `scann_options["num_leaves_to_search"]`; ignored by an
                index with a single leaf. Not validated here (ScaNN clamps it to the leaves
                there are): `AdaptiveRetriever.plan` checks it.
            reorder: asymmetric-hashing candidates ScaNN re-scores exactly before keeping
                `size` (at least `size`). Defaults to `max(size,
                scann_options["reorder_num_neighbors"])`.

        Returns:
            `(rows, scores)`, `(n, size)` int64 row numbers and float32 cosine scores; rows
            ScaNN could not fill (too few points in the searched leaves) have score `-inf`.
        """
        if reorder is None:
            reorder = int(self.scann_options["reorder_num_neighbors"])
        reorder = max(size, int(reorder))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parallel = queries.shape[0] >= 64 and self.search_threads != 1
        search = self.searcher.search_batched_parallel if parallel else self.searcher.search_batched
        extra = {} if leaves_to_search is None else {"leaves_to_search": int(leaves_to_search)}
        rows, scores = search(
            queries,
            final_num_neighbors=size,
            pre_reorder_num_neighbors=min(reorder, self.count),
            **extra,
        )
        rows = np.asarray(rows, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        missing = np.isnan(scores)
        if missing.any():
            scores = np.where(missing, -np.inf, scores).astype(np.float32)
            rows = np.where(missing, 0, rows)
        return rows, scores

    def lookup_ids(self, rows: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Maps row numbers to ids; invalid entries become -1 (int ids) or "" (string ids)."""
        out = self.ids[rows]
        if valid is not None and not valid.all():
            out = out.copy()
            out[~valid] = -1 if out.dtype.kind == "i" else ""
        return out

    def tune(self, queries: Any = None, **kwargs: Any):
        """The cheapest search config meeting a recall target: `tune.tune_index(self, ...)`
        (see there for the arguments); `tune.TuneResult.search_defaults()` and
        `tuned_index.publish_tuned` write it into a new index version."""
        from mrl_keras.serving.retrieval.tune import tune_index

        return tune_index(self, queries, **kwargs)

    def __repr__(self) -> str:
        return (
            f"AdaptiveIndex(path={str(self.path)!r}, count={self.count}, d={self.embedding_dim}, "
            f"shortlist_dim={self.shortlist_dim}, rerank_dim={self.rerank_dim}, "
            f"model_version={self.model_version}, index_version={self.index_version!r})"
        )
