"""The int8 rerank store: per-dimension symmetric scales, and decoding of every store dtype.

An int8 store keeps `c_ij = round(z_ij / s_j)` clipped to [-127, 127] with
`s_j = max_i |z_ij| / 127` (one scale per stored dimension, in `rerank_scales.npy` next to the
store, float32 `(D_r,)`): 1 byte a dimension, a quarter of float32. A rerank dot product is
`<q * s, c>`, the query scaled once per stage; prefix norms are those of the decoded values
`c * s`, so re-normalised scores are cosines of the decoded vectors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.serving.retrieval.store_codecs import from_bfloat16_bits

__all__ = ["SCALES_NAME", "decode_rows", "encode_int8", "int8_scales", "load_scales"]

SCALES_NAME = "rerank_scales.npy"
_CHUNK = 16384


def int8_scales(embeddings: Any, rerank_dim: int) -> np.ndarray:
    """Per-dimension scales `max_i |z_i[:rerank_dim]| / 127`, float32 `(rerank_dim,)`.

    One chunked pass (a memory-mapped array larger than RAM is fine); an all-zero column gets
    a tiny positive scale so decoding stays finite.

    Raises:
        ValueError: non-finite embeddings.
    """
    peak = np.zeros(rerank_dim, np.float32)
    for start in range(0, int(embeddings.shape[0]), _CHUNK):
        block = np.asarray(embeddings[start : start + _CHUNK, :rerank_dim], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError(
                f"Expected finite embeddings. Received NaN or Inf in rows {start}..."
                f"{start + len(block) - 1}"
            )
        np.maximum(peak, np.abs(block).max(axis=0), out=peak)
    return (np.maximum(peak, 1e-30) / 127.0).astype(np.float32)


def encode_int8(x: np.ndarray, scales: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int8 codes `clip(round(x / scales), -127, 127)` of float32 rows `x` `(n, D_r)`."""
    q = np.rint(np.asarray(x, dtype=np.float32) / scales)
    np.clip(q, -127, 127, out=q)
    if out is None:
        return q.astype(np.int8)
    np.copyto(out, q, casting="unsafe")
    return out


def decode_rows(rows: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """float32 values of store rows of any store dtype.

    Args:
        rows: rows of a store: float32, float16, uint16 (bfloat16 bits) or int8 (then `scales`
            of the same width is required).
        scales: the int8 store's per-dimension scales (of the same columns as `rows`).

    Raises:
        ValueError: int8 rows without scales, or an unknown dtype.
    """
    rows = np.asarray(rows)
    if rows.dtype == np.int8:
        if scales is None:
            raise ValueError("Expected the int8 store's scales to decode int8 rows.")
        return rows.astype(np.float32) * scales
    if rows.dtype == np.uint16:
        return from_bfloat16_bits(rows)
    if rows.dtype in (np.float16, np.float32):
        return rows.astype(np.float32, copy=False)
    raise ValueError(
        f"Expected a store of float32, float16, bfloat16 or int8. Received {rows.dtype}"
    )


def load_scales(
    index_dir: str | os.PathLike, store_dtype: str, rerank_dim: int
) -> np.ndarray | None:
    """The scales of an int8 index directory (None for other store dtypes).

    Raises:
        ValueError: the int8 index has no scales file or one of the wrong shape.
    """
    if store_dtype != "int8":
        return None
    path = Path(index_dir) / SCALES_NAME
    try:
        scales = np.load(path, allow_pickle=False)
    except OSError as e:
        raise ValueError(f"int8 index {str(index_dir)!r} has no readable {SCALES_NAME}: {e}") from e
    if scales.shape != (rerank_dim,) or scales.dtype != np.float32 or not np.all(scales > 0):
        raise ValueError(
            f"int8 index {str(index_dir)!r}: {SCALES_NAME} must be positive float32 of shape "
            f"({rerank_dim},). Received {scales.dtype} {scales.shape}"
        )
    return scales
