"""Benchmark-local prototypes of faster rerank stores for `mrl_keras.serving`.

`QuantizedPrefixReranker` is `mrl_keras.serving.retrieval.rerank.PrefixReranker` with a compact store:

- `"bfloat16"`: the top 16 bits of each float32 (round-to-nearest-even), kept as `uint16`;
  widened back by `uint32(u) << 16`, a shift NumPy vectorises (NumPy's float16 -> float32 cast
  has no SIMD path and is ~10-30x slower per element). 2 bytes a dimension.
- `"int8"`: per-dimension symmetric scales `s_j = max_i |z_ij| / 127` and `round(z / s)`;
  the dot product is `<q * s, z_q>` with the query pre-scaled once. 1 byte a dimension.

Everything else (blocking over queries, prefix norms, funnel stages) is the serving kernel's.
"""

from __future__ import annotations

import numpy as np

from mrl_keras.serving.retrieval.rerank import PrefixReranker
from mrl_keras.serving.retrieval.store_codecs import from_bfloat16_bits, to_bfloat16_bits

_CHUNK = 65536


def quantize_store(store: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Converts a `(count, D_r)` store chunk by chunk; returns `(codes, scales)`.

    The store is float32, float16, or bfloat16 bit patterns (uint16, the serving index's
    `store_dtype="bfloat16"`), which are widened to float32 first."""
    count, dim = store.shape

    def rows(s: int) -> np.ndarray:
        block = np.asarray(store[s : s + _CHUNK])
        if block.dtype == np.uint16:
            return from_bfloat16_bits(block)
        return block.astype(np.float32, copy=False)

    if kind == "bfloat16":
        out = np.empty((count, dim), np.uint16)
        for s in range(0, count, _CHUNK):
            out[s : s + _CHUNK] = to_bfloat16_bits(rows(s))
        return out, None
    if kind == "int8":
        peak = np.zeros(dim, np.float32)
        for s in range(0, count, _CHUNK):
            np.maximum(peak, np.abs(rows(s)).max(axis=0), out=peak)
        scales = np.maximum(peak, 1e-30) / 127.0
        out = np.empty((count, dim), np.int8)
        for s in range(0, count, _CHUNK):
            block = rows(s) / scales
            out[s : s + _CHUNK] = np.clip(np.rint(block), -127, 127)
        return out, scales.astype(np.float32)
    raise ValueError(f"Expected kind 'bfloat16' or 'int8'. Received: {kind!r}")


class QuantizedPrefixReranker(PrefixReranker):
    """`PrefixReranker` over a bfloat16 (uint16 bits) or int8 (per-dimension scales) store."""

    def __init__(self, codes, scales, prefix_norms, norm_dims):
        # the prototype's own NumPy gather (`_gather_dot` below), not the compiled kernel
        super().__init__(codes, prefix_norms, norm_dims, scales=scales, use_kernel=False)
        self.scales = scales

    def _gather_dot(self, rows, queries, start, stop, want_sumsq):
        n, k = rows.shape
        width = stop - start
        block = max(1, (2 << 20) // max(1, k * width * 4))
        dots = np.empty((n, k), dtype=np.float32)
        sumsq = np.empty((n, k), dtype=np.float32) if want_sumsq else None
        full_width = start == 0 and stop == self.store.shape[1]
        scales = None if self.scales is None else self.scales[start:stop]
        for b in range(0, n, block):
            e = min(n, b + block)
            flat = rows[b:e].reshape(-1)
            codes = (
                np.take(self.store, flat, axis=0) if full_width else self.store[flat, start:stop]
            )
            q = np.ascontiguousarray(queries[b:e, start:stop], dtype=np.float32)
            if scales is None:
                gathered = from_bfloat16_bits(codes)
            else:
                gathered = codes.astype(np.float32)
                q = q * scales
            gathered = gathered.reshape(e - b, k, width)
            dots[b:e] = np.matmul(gathered, q[:, :, None])[:, :, 0]
            if want_sumsq:
                if scales is not None:
                    gathered = gathered * scales
                sumsq[b:e] = np.einsum("nkd,nkd->nk", gathered, gathered)
        return dots, sumsq
