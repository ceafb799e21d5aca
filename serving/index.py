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

The directory is written to a hidden sibling and swapped into place atomically
(`renameat2(RENAME_EXCHANGE)` on Linux), so a reader or a killed build never sees half an index.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import errno
import hashlib
import io
import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SCANN_DIR = "scann"
RERANK_NAME = "rerank.npy"
NORMS_NAME = "prefix_norms.npy"
IDS_NAME = "ids.npy"
STORE_DTYPES = ("float32", "float16", "bfloat16")
# On-disk NumPy dtype of each store dtype (NumPy has no bfloat16: its bits are kept as uint16).
_STORE_NUMPY_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}
_CHUNK_ROWS = 8192
# Each chunk is processed in row blocks of about this many bytes of float32, so that the checks,
# the rounding, the norms, the hash and the write of a block all find it in the L2 cache.
_BLOCK_BYTES = 1 << 18


class IndexIntegrityError(ValueError):
    """The index directory is incomplete, corrupted or of an unknown format version."""


class ModelVersionMismatchError(ValueError):
    """The index was built by a different model version than the one serving queries."""


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16): the upper 16 bits, rounded to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


# Index of the upper uint16 half within a uint32 viewed as two uint16.
_HIGH_HALF = 1 if sys.byteorder == "little" else 0


def _round_to_bfloat16(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`from_bfloat16_bits(to_bfloat16_bits(x))` computed in place in `out`, without temporaries.

    Args:
        x: C-contiguous float32 `(n, k)`.
        out: uint32 `(n, k)` scratch; on return it holds the rounded float32 bit patterns, whose
            upper uint16 halves (`out.view(np.uint16)[:, _HIGH_HALF::2]`) are the bfloat16 bits.

    Returns:
        `out` viewed as float32: the stored values, widened.
    """
    u = x.view(np.uint32)
    np.right_shift(u, 16, out=out)
    out &= 1
    out += np.uint32(0x7FFF)
    out += u  # same wrap-around as to_bfloat16_bits (only for NaN bit patterns)
    out &= np.uint32(0xFFFF0000)  # == (u + rounding) >> 16 << 16
    return out.view(np.float32)


def from_bfloat16_bits(u: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (a shift, exact)."""
    w = np.asarray(u).astype(np.uint32)
    w <<= 16
    return w.view(np.float32)


def _require_scann():
    # Imported on first use: the scann package imports TensorFlow (and with it Keras), which
    # reading a manifest or the rerank store does not need.
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except ImportError as e:  # pragma: no cover - scann is a hard dependency
        raise ImportError(
            "The adaptive index needs ScaNN. Install it with `pip install scann==1.4.2`."
        ) from e
    return scann_ops_pybind


def default_scann_options(count: int, dim: int, shortlist_size: int = 200) -> dict[str, Any]:
    """ScaNN settings that scale with the corpus size.

    Tree partitioning with about `sqrt(count)` spherical leaves (none below 16,000 points),
    searching 10% of them, trained on 100 points per leaf (at least 50,000); asymmetric hashing
    with 1 dimension per block up to `dim = 64` (2 above: a 32-d shortlist at 1M points keeps
    ~3% more of the exact neighbours for ~10% more scan time than with 2) and an anisotropic
    threshold of 0.2; exact float32 reordering of `shortlist_size` candidates (a search for
    more reorders as many as it asks for; with 1 dimension per block, reordering 2x more kept
    no more neighbours at 1M points). `reorder_dtype="bfloat16"` halves the reordering bytes
    (scores then carry bfloat16 rounding).

    Args:
        count: int. Number of points in the corpus.
        dim: int. The shortlist dimension `D_s`.
        shortlist_size: int. Default number of candidates the shortlist returns.

    Returns:
        A dict with every knob `build_index(..., scann_options=...)` accepts.
    """
    num_leaves = 1 if count < 16_000 else int(round(math.sqrt(count)))
    return {
        "num_leaves": num_leaves,
        "num_leaves_to_search": max(1, int(math.ceil(num_leaves * 0.1))),
        "spherical": True,
        "training_sample_size": int(min(count, max(50_000, 100 * num_leaves))),
        "dims_per_block": 1 if dim <= 64 else 2,
        "anisotropic_quantization_threshold": 0.2,
        "hash_type": "lut16",
        "num_neighbors": int(min(count, shortlist_size)),
        "reorder_num_neighbors": int(min(count, shortlist_size)),
        "reorder_dtype": "float32",
        "training_threads": 0,
    }


# ScaNN's exact reordering of the shortlist: the dtype it keeps the (count, D_s) prefix in.
_REORDER_DTYPES = {"float32": "FLOAT32", "bfloat16": "BFLOAT16", "int8": "INT8"}


def _resolve_scann_options(
    count: int, dim: int, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    options = default_scann_options(count, dim)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"Unknown ScaNN option(s) {unknown}. Expected a subset of {sorted(options)}."
        )
    options.update(overrides)
    if "num_leaves" in overrides and "num_leaves_to_search" not in overrides:
        options["num_leaves_to_search"] = max(1, int(math.ceil(options["num_leaves"] * 0.1)))
    for key in (
        "num_leaves",
        "num_leaves_to_search",
        "num_neighbors",
        "reorder_num_neighbors",
        "dims_per_block",
        "training_sample_size",
    ):
        value = options[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"Expected scann_options[{key!r}] to be a positive int. Received: {value!r}"
            )
        options[key] = int(value)
    if options["num_leaves_to_search"] > options["num_leaves"]:
        raise ValueError(
            "Expected num_leaves_to_search <= num_leaves. Received: "
            f"num_leaves_to_search={options['num_leaves_to_search']}, num_leaves={options['num_leaves']}"
        )
    if options["num_leaves"] > count:
        raise ValueError(
            f"Expected num_leaves <= count. Received: num_leaves={options['num_leaves']}, count={count}"
        )
    if options["reorder_dtype"] not in _REORDER_DTYPES:
        raise ValueError(
            f"Expected reorder_dtype in {tuple(_REORDER_DTYPES)}. "
            f"Received: {options['reorder_dtype']!r}"
        )
    if options["hash_type"] not in ("lut16", "lut256"):
        raise ValueError(
            f"Expected hash_type 'lut16' or 'lut256'. Received: {options['hash_type']!r}"
        )
    options["num_neighbors"] = min(options["num_neighbors"], count)
    options["reorder_num_neighbors"] = min(
        max(options["reorder_num_neighbors"], options["num_neighbors"]), count
    )
    options["training_sample_size"] = min(options["training_sample_size"], count)
    return options


def _build_searcher(data: np.ndarray, options: dict[str, Any]):
    scann = _require_scann()
    builder = scann.builder(data, options["num_neighbors"], "dot_product")
    if options["num_leaves"] > 1:
        builder = builder.tree(
            num_leaves=options["num_leaves"],
            num_leaves_to_search=options["num_leaves_to_search"],
            training_sample_size=options["training_sample_size"],
            spherical=bool(options["spherical"]),
        )
    builder = builder.score_ah(
        options["dims_per_block"],
        anisotropic_quantization_threshold=float(options["anisotropic_quantization_threshold"]),
        training_sample_size=options["training_sample_size"],
        hash_type=options["hash_type"],
    )
    from scann import ReorderType  # only reached once `_require_scann` found ScaNN

    builder = builder.reorder(
        options["reorder_num_neighbors"],
        quantize=getattr(ReorderType, _REORDER_DTYPES[options["reorder_dtype"]]),
    )
    threads = int(options["training_threads"]) or (os.cpu_count() or 1)
    return builder.set_n_training_threads(threads).build()


def default_prefix_norm_dims(shortlist_dim: int, rerank_dim: int) -> tuple[int, ...]:
    """Prefix dims whose norms the index stores: powers of two from 8, `D_s` and `D_r`."""
    dims = {shortlist_dim, rerank_dim}
    m = 8
    while m < rerank_dim:
        dims.add(m)
        m *= 2
    return tuple(sorted(d for d in dims if 1 <= d <= rerank_dim))


def load_embeddings_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads full embeddings (and ids) from a `.npy` (memory-mapped) or `.npz` file.

    A `.npz` holds `embeddings` (or a single 2-D array) and optionally `ids`.

    Returns:
        `(embeddings, ids_or_None)`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Embeddings file not found: {str(path)!r}")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "embeddings" in archive:
                embeddings = archive["embeddings"]
            else:
                arrays = [k for k in keys if archive[k].ndim == 2 and k != "ids"]
                if len(arrays) != 1:
                    raise ValueError(
                        f"Expected an 'embeddings' array in {str(path)!r}. Received keys: {keys}"
                    )
                embeddings = archive[arrays[0]]
            ids = archive["ids"] if "ids" in archive else None
        return embeddings, ids
    raise ValueError(f"Expected a .npy or .npz embeddings file. Received: {str(path)!r}")


def load_ids_file(path: str | os.PathLike) -> np.ndarray:
    """Reads ids from `.npy`, or a text file with one id per line (ints if all parse as ints)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Ids file not found: {str(path)!r}")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    try:
        return np.asarray([int(v) for v in lines], dtype=np.int64)
    except ValueError:
        return np.asarray(lines, dtype=str)


def _normalize_ids(ids: Any, count: int) -> np.ndarray:
    if ids is None:
        return np.arange(count, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != count:
        raise ValueError(f"Expected ids of shape ({count},). Received: shape {ids.shape}")
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    elif ids.dtype.kind in "US":
        ids = ids.astype(str)
    elif ids.dtype.kind == "O" and all(isinstance(v, str) for v in ids):
        ids = ids.astype(str)
    elif ids.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) for v in ids):
        ids = ids.astype(np.int64)
    else:
        raise TypeError(f"Expected integer or string ids. Received dtype {ids.dtype}")
    if np.unique(ids).shape[0] != count:
        raise ValueError("Expected unique ids. Received duplicates.")
    return ids


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The `.npy` header `np.save` and `np.lib.format.open_memmap` write for a C-order array."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(n) for n in shape),
    }
    buffer = io.BytesIO()
    try:  # numpy picks the oldest format version that can hold the header
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def _shortlist_prefixes(embeddings: Any, shortlist_dim: int) -> np.ndarray:
    """The re-normalised `z[:shortlist_dim]` ScaNN indexes, `(count, shortlist_dim)` float32.

    A pass of its own (before the store's) so that ScaNN can build while the store is written.
    Reading only the first columns of a memory-mapped file still maps its pages, which the
    store pass then finds mapped: the extra cost is small (0.1 s of 1.6 s at 1M x 2048).

    Raises:
        ValueError: non-finite values in the prefix (the store pass checks the rest).
    """
    count = int(embeddings.shape[0])
    shortlist = np.empty((count, shortlist_dim), dtype=np.float32)
    for start in range(0, count, _CHUNK_ROWS):
        stop = min(count, start + _CHUNK_ROWS)
        head = np.asarray(embeddings[start:stop, :shortlist_dim], dtype=np.float32)
        if not np.isfinite(head).all():
            raise ValueError(
                f"Expected finite embeddings. Received NaN or Inf in rows {start}..{stop - 1}"
            )
        head_norm = np.linalg.norm(head, axis=1, keepdims=True)
        np.divide(head, np.maximum(head_norm, 1e-12), out=shortlist[start:stop])
    return shortlist


def _write_store(
    path: Path,
    embeddings: Any,
    *,
    rerank_dim: int,
    store_dtype: str,
    norm_dims: tuple[int, ...],
    progress: bool,
) -> tuple[str, np.ndarray, np.ndarray]:
    """Writes the rerank store `.npy` in one pass over `embeddings` (see `build_index`).

    The file is written with plain writes (the header, then each block's bytes in order) and
    hashed as it is written, which gives the digest `_sha256(path)` would without reading it
    back. Norms are those of the stored values (rounded for bfloat16 and float16).

    Returns:
        `(sha256 hex digest of the file, (count, len(norm_dims)) float32 prefix norms)`.

    Raises:
        ValueError: non-finite embeddings.
    """
    count = int(embeddings.shape[0])
    store_np_dtype = np.dtype(_STORE_NUMPY_DTYPES[store_dtype])
    header = _npy_header(store_np_dtype, (count, rerank_dim))
    digest = hashlib.sha256(header)
    norms = np.empty((count, len(norm_dims)), dtype=np.float32)
    # ||z[:m]||^2 for every norm dim m: sums of squares over the segments between consecutive
    # norm dims (np.add.reduceat), then a cumulative sum over those few segments.
    segment_starts = np.asarray((0,) + norm_dims[:-1], dtype=np.intp)
    last = norm_dims[-1]
    block_rows = max(1, _BLOCK_BYTES // (4 * rerank_dim))
    squares = np.empty((block_rows, last), dtype=np.float32)
    scratch = np.empty((block_rows, rerank_dim), dtype=np.uint32)
    # Two chunk buffers: one is written to the file by a thread while the next one is filled.
    rows = min(count, _CHUNK_ROWS)
    buffers = [np.empty((rows, rerank_dim), dtype=store_np_dtype) for _ in range(2)]
    starts = range(0, count, _CHUNK_ROWS)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="index: store", unit="chunk", leave=False)
    with open(path, "wb") as f, ThreadPoolExecutor(1) as writer:
        f.write(header)
        pending = None
        for i, start in enumerate(starts):
            stop = min(count, start + _CHUNK_ROWS)
            chunk = np.asarray(embeddings[start:stop, :rerank_dim], dtype=np.float32)
            if store_dtype == "float32" and chunk.flags.c_contiguous:
                out = chunk  # written as is, no copy
            else:
                out = buffers[i % 2][: stop - start]  # its previous write finished (below)
            for offset in range(0, stop - start, block_rows):
                x = chunk[offset : offset + block_rows]
                n = x.shape[0]
                if not np.isfinite(x).all():
                    raise ValueError(
                        "Expected finite embeddings. Received NaN or Inf in rows "
                        f"{start}..{stop - 1}"
                    )
                stored = out[offset : offset + n]
                if store_dtype == "bfloat16":
                    widened = _round_to_bfloat16(x, scratch[:n])
                    np.copyto(stored, scratch[:n].view(np.uint16)[:, _HIGH_HALF::2])
                elif store_dtype == "float16":
                    np.copyto(stored, x, casting="same_kind")
                    widened = scratch[:n].view(np.float32)
                    np.copyto(widened, stored)
                else:
                    if out is not chunk:
                        np.copyto(stored, x)
                    widened = stored
                digest.update(stored)  # the file's bytes, in order
                prefix = widened[:, :last]
                np.multiply(prefix, prefix, out=squares[:n])
                sums = np.add.reduceat(squares[:n], segment_starts, axis=1)
                np.cumsum(sums, axis=1, out=sums)
                np.sqrt(sums, out=norms[start + offset : start + offset + n])
            if pending is not None:
                pending.result()
            pending = writer.submit(f.write, out)
        if pending is not None:
            pending.result()
    return digest.hexdigest(), norms


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _seal_manifest(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    sealed = dict(body, manifest_sha256=hashlib.sha256(_manifest_bytes(body)).hexdigest())
    return _manifest_bytes(sealed)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two paths with renameat2(RENAME_EXCHANGE); False when unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(out_dir: Path) -> None:
    for sibling in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):
        try:
            pid = int(sibling.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(sibling, ignore_errors=True)


def _publish(tmp_dir: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(tmp_dir, out_dir)
    elif _exchange(tmp_dir, out_dir):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # tmp_dir now holds the previous index
    else:  # no renameat2: two renames, with a short window where out_dir is absent
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
        os.rename(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    fd = os.open(out_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
) -> Path:
    """Builds an adaptive retrieval index directory from full embeddings.

    The ScaNN searcher (tree + asymmetric hashing + reorder) indexes the re-normalised prefix
    `z[:shortlist_dim]`; the rerank store keeps the raw prefix `z[:rerank_dim]` (memory-mappable)
    and the norms of a few prefixes so that reranking re-normalises cheaply. Embeddings are read
    in chunks, so a memory-mapped `.npy` larger than RAM is fine for the store (the shortlist
    prefix is held in memory for ScaNN's training).

    Args:
        out_dir: path of the index directory. Replaced atomically if it exists.
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

    Returns:
        The `Path` of the published index directory.

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
    ids = _normalize_ids(ids, count)
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
    options = _resolve_scann_options(count, shortlist_dim, scann_options)

    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out_dir)
    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        shortlist = _shortlist_prefixes(embeddings, shortlist_dim)
        if progress:
            print(f"index: building ScaNN over {count} x {shortlist_dim} ...", file=sys.stderr)
        # ScaNN's build releases the GIL: it runs in a thread while the store is written (at 1M x
        # 2048 this saves about a third of the wall time on 2 cores). If the store pass raises,
        # leaving the executor waits for the build (it cannot be cancelled), then re-raises.
        with ThreadPoolExecutor(1) as pool:
            scann_build = pool.submit(_build_searcher, shortlist, options)
            store_sha256, norms = _write_store(
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
            name: known.get(name) or _sha256(p)
            for p in sorted(tmp_dir.rglob("*"))
            if p.is_file()
            for name in [p.relative_to(tmp_dir).as_posix()]
        }
        content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        manifest = {
            "format_version": FORMAT_VERSION,
            "index_version": content[:16],
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
        (tmp_dir / MANIFEST_NAME).write_bytes(_seal_manifest(manifest))
        _fsync_tree(tmp_dir)
        _publish(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def read_manifest(index_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates `manifest.json` (format version and self-checksum) of an index."""
    path = Path(index_dir) / MANIFEST_NAME
    if not path.is_file():
        raise IndexIntegrityError(
            f"Not an index directory (no {MANIFEST_NAME}): {str(Path(index_dir))!r}"
        )
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexIntegrityError(f"Corrupted {path}: not valid JSON ({e}).") from e
    if not isinstance(manifest, dict):
        raise IndexIntegrityError(f"Corrupted {path}: expected a JSON object.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexIntegrityError(
            f"Unsupported index format_version {version!r} in {path}; this mrl-keras reads "
            f"format_version {FORMAT_VERSION}. Rebuild the index with `mrl index build`."
        )
    if _seal_manifest(manifest) != raw or "manifest_sha256" not in manifest:
        raise IndexIntegrityError(f"Corrupted {path}: its checksum does not match its content.")
    return manifest


def verify_index(index_dir: str | os.PathLike, manifest: dict[str, Any] | None = None) -> None:
    """Checks the sha256 of every file listed in the manifest; raises IndexIntegrityError."""
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir) if manifest is None else manifest
    for name, expected in sorted(manifest["files"].items()):
        path = index_dir / name
        if not path.is_file():
            raise IndexIntegrityError(f"Index {str(index_dir)!r} is missing {name}.")
        actual = _sha256(path)
        if actual != expected:
            raise IndexIntegrityError(
                f"Index {str(index_dir)!r}: checksum mismatch for {name} "
                f"(expected sha256 {expected[:12]}..., found {actual[:12]}...). Rebuild the index."
            )


def check_model_version(
    manifest: dict[str, Any], served_version: int | None, *, allow_mismatch: bool = False
) -> None:
    """Refuses an index built by another model version than `served_version`.

    Raises:
        ModelVersionMismatchError: naming both versions, unless `allow_mismatch`.
    """
    built = manifest.get("model_version")
    if allow_mismatch or built is None or served_version is None:
        return
    if int(built) != int(served_version):
        raise ModelVersionMismatchError(
            f"Index was built by model {manifest.get('model_name')!r} version {built}, but the "
            f"backend serves version {served_version}. Rebuild the index with the served model, "
            "pin the backend to the index's version, or pass --allow-version-mismatch."
        )


class AdaptiveIndex:
    """A loaded adaptive retrieval index (see `build_index`).

    Attributes: `path`, `manifest`, `searcher` (ScaNN), `store` (memory-mapped `(count, D_r)`),
    `prefix_norms` `(count, len(prefix_norm_dims))`, `prefix_norm_dims`, `ids`, `count`,
    `embedding_dim`, `shortlist_dim`, `rerank_dim`, `model_name`, `model_version`,
    `index_version`, `search_threads` (see `set_search_threads`).

    Example:

    >>> index = mrl_keras.serving.AdaptiveIndex.load("/tmp/idx")   # doctest: +SKIP
    """

    def __init__(self, path, manifest, searcher, store, prefix_norms, ids):
        self.path = Path(path)
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
    ) -> AdaptiveIndex:
        """Loads an index directory.

        Args:
            index_dir: the directory `build_index` wrote.
            verify: check the sha256 of every file (reads every byte once).
            model_version: the version the backend serves; refused if it differs from the
                index's, unless `allow_version_mismatch`.
            allow_version_mismatch: accept an index built by another model version.
            mmap: memory-map the rerank store (else read it into RAM).

        Raises:
            IndexIntegrityError: missing files, checksum mismatch, unknown format version.
            ModelVersionMismatchError: see `model_version`.
        """
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        check_model_version(manifest, model_version, allow_mismatch=allow_version_mismatch)
        if verify:
            verify_index(index_dir, manifest)
        try:
            searcher = _require_scann().load_searcher(str(index_dir / SCANN_DIR))
            store = np.load(
                index_dir / RERANK_NAME, mmap_mode="r" if mmap else None, allow_pickle=False
            )
            norms = np.load(index_dir / NORMS_NAME, allow_pickle=False)
            ids = np.load(index_dir / IDS_NAME, allow_pickle=False)
        except (OSError, ValueError, RuntimeError) as e:
            raise IndexIntegrityError(f"Cannot load index {str(index_dir)!r}: {e}") from e
        count, rerank_dim = int(manifest["count"]), int(manifest["rerank_dim"])
        if store.shape != (count, rerank_dim) or ids.shape != (count,) or norms.shape[0] != count:
            raise IndexIntegrityError(
                f"Index {str(index_dir)!r}: array shapes disagree with the manifest."
            )
        store_dtype = manifest.get("store_dtype", "float32")
        if _STORE_NUMPY_DTYPES.get(store_dtype) != store.dtype.name:
            raise IndexIntegrityError(
                f"Index {str(index_dir)!r}: rerank store dtype {store.dtype.name} disagrees with "
                f"the manifest's store_dtype {store_dtype!r} (expected one of {STORE_DTYPES})."
            )
        return cls(index_dir, manifest, searcher, store, norms, ids)

    def norm_column(self, dim: int) -> int | None:
        """Column of `prefix_norms` holding `||z[:dim]||`, or None when not stored."""
        return self._norm_column.get(dim)

    def shortlist(
        self, queries: np.ndarray, size: int, leaves_to_search: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """ScaNN search of re-normalised `(n, D_s)` queries.

        Args:
            queries: `(n, D_s)` re-normalised queries.
            size: shortlist size per query.
            leaves_to_search: ScaNN leaves searched per query (more: better recall, slower).
                Defaults to the index's `scann_options["num_leaves_to_search"]`; ignored by an
                index with a single leaf. Not validated here (ScaNN clamps it to the leaves
                there are): `AdaptiveRetriever.plan` checks it.

        Returns:
            `(rows, scores)`, `(n, size)` int64 row numbers and float32 cosine scores; rows
            ScaNN could not fill (too few points in the searched leaves) have score `-inf`.
        """
        reorder = max(size, int(self.scann_options["reorder_num_neighbors"]))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parallel = queries.shape[0] >= 64 and self.search_threads != 1
        search = (
            self.searcher.search_batched_parallel if parallel else self.searcher.search_batched
        )
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

    def __repr__(self) -> str:
        return (
            f"AdaptiveIndex(path={str(self.path)!r}, count={self.count}, d={self.embedding_dim}, "
            f"shortlist_dim={self.shortlist_dim}, rerank_dim={self.rerank_dim}, "
            f"model_version={self.model_version}, index_version={self.index_version!r})"
        )
