"""The rerank store writer: one chunked pass over the embeddings that checks, rounds, hashes and
writes the `(count, D_r)` store and computes the prefix norms, plus the shortlist prefix ScaNN
indexes.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.serving.retrieval.store_codecs import (
    HIGH_HALF,
    STORE_NUMPY_DTYPES,
    round_to_bfloat16,
)
from mrl_keras.serving.retrieval.store_int8 import SCALES_NAME, encode_int8, int8_scales

__all__ = ["BLOCK_BYTES", "CHUNK_ROWS", "npy_header", "shortlist_prefixes", "write_store"]

CHUNK_ROWS = 8192
# Each chunk is processed in row blocks of about this many bytes of float32, so that the checks,
# the rounding, the norms, the hash and the write of a block all find it in the L2 cache.
BLOCK_BYTES = 1 << 18


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
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


def shortlist_prefixes(embeddings: Any, shortlist_dim: int) -> np.ndarray:
    """The re-normalised `z[:shortlist_dim]` ScaNN indexes, `(count, shortlist_dim)` float32.

    A pass of its own (before the store's) so that ScaNN can build while the store is written.
    Reading only the first columns of a memory-mapped file still maps its pages, which the
    store pass then finds mapped: the extra cost is small (0.1 s of 1.6 s at 1M x 2048).

    Raises:
        ValueError: non-finite values in the prefix (the store pass checks the rest).
    """
    count = int(embeddings.shape[0])
    shortlist = np.empty((count, shortlist_dim), dtype=np.float32)
    for start in range(0, count, CHUNK_ROWS):
        stop = min(count, start + CHUNK_ROWS)
        head = np.asarray(embeddings[start:stop, :shortlist_dim], dtype=np.float32)
        if not np.isfinite(head).all():
            raise ValueError(
                f"Expected finite embeddings. Received NaN or Inf in rows {start}..{stop - 1}"
            )
        head_norm = np.linalg.norm(head, axis=1, keepdims=True)
        np.divide(head, np.maximum(head_norm, 1e-12), out=shortlist[start:stop])
    return shortlist


def write_store(
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
    hashed as it is written, which gives the digest `sha256_file(path)` would without reading it
    back. Norms are those of the stored values (rounded for bfloat16 and float16, decoded
    `codes * scales` for int8, whose scales take a first pass and go to `rerank_scales.npy`
    beside the store).

    Returns:
        `(sha256 hex digest of the file, (count, len(norm_dims)) float32 prefix norms)`.

    Raises:
        ValueError: non-finite embeddings.
    """
    count = int(embeddings.shape[0])
    scales = None
    if store_dtype == "int8":
        scales = int8_scales(embeddings, rerank_dim)
        np.save(path.parent / SCALES_NAME, scales)
    store_np_dtype = np.dtype(STORE_NUMPY_DTYPES[store_dtype])
    header = npy_header(store_np_dtype, (count, rerank_dim))
    digest = hashlib.sha256(header)
    norms = np.empty((count, len(norm_dims)), dtype=np.float32)
    # ||z[:m]||^2 for every norm dim m: sums of squares over the segments between consecutive
    # norm dims (np.add.reduceat), then a cumulative sum over those few segments.
    segment_starts = np.asarray((0,) + norm_dims[:-1], dtype=np.intp)
    last = norm_dims[-1]
    block_rows = max(1, BLOCK_BYTES // (4 * rerank_dim))
    squares = np.empty((block_rows, last), dtype=np.float32)
    scratch = np.empty((block_rows, rerank_dim), dtype=np.uint32)
    # Two chunk buffers: one is written to the file by a thread while the next one is filled.
    rows = min(count, CHUNK_ROWS)
    buffers = [np.empty((rows, rerank_dim), dtype=store_np_dtype) for _ in range(2)]
    starts = range(0, count, CHUNK_ROWS)
    if progress:
        from mrl_keras.progress_bar import progress

        starts = progress(starts, desc="index: store", unit="chunk", leave=False)
    with open(path, "wb") as f, ThreadPoolExecutor(1) as writer:
        f.write(header)
        pending = None
        for i, start in enumerate(starts):
            stop = min(count, start + CHUNK_ROWS)
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
                    widened = round_to_bfloat16(x, scratch[:n])
                    np.copyto(stored, scratch[:n].view(np.uint16)[:, HIGH_HALF::2])
                elif store_dtype == "int8":
                    encode_int8(x, scales, out=stored)
                    widened = scratch[:n].view(np.float32)
                    np.multiply(stored, scales, out=widened)
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
