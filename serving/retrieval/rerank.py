"""Batched rerank kernel: score shortlisted rows with re-normalised prefixes, stage by stage.

A funnel over dims `m_1 < m_2 < ...` rescoring the survivors of each stage only needs the bytes
`z[m_{j-1}:m_j]` of each survivor at stage `j`: the kernel keeps the raw dot products
`<q[:m], z[:m]>` of every candidate and extends them by the next slice of columns, then divides
by `||q[:m]||` and by `||z[:m]||` (read from the index's stored prefix norms when `m` is one of
them, else accumulated from the same gathered slices). Only candidate rows are gathered (and
widened to float32 when the store is float16 or bfloat16); queries are processed in blocks so the
temporaries stay small. Every step is vectorised over the whole batch of queries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrl_keras.serving.retrieval import rerank_kernel

_BLOCK_BYTES = 2 << 20  # gathered float32 bytes per block of queries (about an L2 cache)
_F16_TO_F32 = (
    np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
)


def top_along_rows(scores: np.ndarray, size: int) -> np.ndarray:
    """Column positions of the `size` largest scores of each row, unordered; `(n, size)`."""
    if size >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    return np.argpartition(-scores, size - 1, axis=1)[:, :size]


def sort_rows_descending(scores: np.ndarray) -> np.ndarray:
    """Column order that sorts each row by descending score (stable)."""
    return np.argsort(-scores, axis=1, kind="stable")


class PrefixReranker:
    """Reranks candidates of a store of raw prefixes `z[:D_r]` through a sequence of stages.

    Args:
        store: `(count, D_r)` float32 or float16 array, or uint16 bfloat16 bit patterns (the
            upper 16 bits of each float32), typically memory-mapped.
        prefix_norms: `(count, len(norm_dims))` float32 `||z[:m]||`, or None.
        norm_dims: the `m` of each column of `prefix_norms`.
        scales: `(D_r,)` float32 per-dimension scales of an int8 store (`store_int8.py`): the
            dot product is `<q * scales, codes>`. None for the other store dtypes.
        use_kernel: gather and score with the compiled kernel of `rerank_kernel.py` when it is
            available for the store's dtype (float32, bfloat16, int8); False: NumPy only.

    Call `rerank(queries, rows, valid, stages)` with raw query embeddings `(n, >= max dim)`,
    candidate rows `(n, K)` (int64), a validity mask `(n, K)` and stages `[(dim, size), ...]`
    (dims increasing, sizes non-increasing). Returns `(rows, scores, valid)` of the last stage,
    `(n, size_last)`, unordered (with `select_last=False`, every candidate of the last stage,
    for a caller that selects and sorts its own top k).
    """

    def __init__(
        self,
        store: np.ndarray,
        prefix_norms: np.ndarray | None = None,
        norm_dims: Sequence[int] = (),
        scales: np.ndarray | None = None,
        use_kernel: bool = True,
    ):
        self.store = np.asarray(store)  # a plain ndarray view (of the memory map when mapped)
        if self.store.dtype == np.int8 and (
            scales is None or np.shape(scales) != (self.store.shape[1],)
        ):
            raise ValueError(
                f"Expected scales of shape ({self.store.shape[1]},) with an int8 store. "
                f"Received: {None if scales is None else np.shape(scales)}"
            )
        self.scales = None if scales is None else np.asarray(scales, dtype=np.float32)
        # the compiled gather-and-dot (rerank_kernel.py) where it builds, else NumPy
        self.use_kernel = (
            use_kernel
            and self.store.flags.c_contiguous
            and rerank_kernel.available(self.store.dtype)
        )
        self.prefix_norms = prefix_norms
        self.norm_column = (
            {int(m): i for i, m in enumerate(norm_dims)} if prefix_norms is not None else {}
        )

    def _gather_dot(
        self, rows: np.ndarray, queries: np.ndarray, start: int, stop: int, want_sumsq: bool
    ):
        """Partial dot products `<q[start:stop], z[start:stop]>` (and squared norms) per candidate."""
        n, k = rows.shape
        width = stop - start
        if self.use_kernel:
            q = np.asarray(queries[:, start:stop], dtype=np.float32)
            if self.scales is not None:
                q = q * self.scales[start:stop]
            return rerank_kernel.gather_dot(
                self.store, rows, q, start, stop, want_sumsq, self.scales
            )
        block = max(1, _BLOCK_BYTES // max(1, k * width * 4))
        dots = np.empty((n, k), dtype=np.float32)
        sumsq = np.empty((n, k), dtype=np.float32) if want_sumsq else None
        full_width = start == 0 and stop == self.store.shape[1]
        for b in range(0, n, block):
            e = min(n, b + block)
            flat = rows[b:e].reshape(-1)
            if full_width:
                gathered = np.take(self.store, flat, axis=0)
            else:
                gathered = self.store[flat, start:stop]
            if gathered.dtype == np.uint16:
                # bfloat16 bits: widening is a shift into the upper half of a float32 (exact).
                w = gathered.astype(np.uint32)
                w <<= 16
                gathered = w.view(np.float32)
            elif gathered.dtype == np.float16:
                # A table lookup is several times faster than NumPy's float16 -> float32 cast.
                gathered = np.take(_F16_TO_F32, gathered.view(np.uint16))
            elif gathered.dtype != np.float32:
                gathered = gathered.astype(np.float32)
            gathered = gathered.reshape(e - b, k, width)
            q = np.ascontiguousarray(queries[b:e, start:stop], dtype=np.float32)
            if self.scales is not None:  # int8 codes: <q, c * s> = <q * s, c>
                q = q * self.scales[start:stop]
            dots[b:e] = np.matmul(gathered, q[:, :, None])[:, :, 0]
            if want_sumsq:
                if self.scales is not None:
                    gathered = gathered * self.scales[start:stop]
                sumsq[b:e] = np.einsum("nkd,nkd->nk", gathered, gathered)
        return dots, sumsq

    def rerank(
        self,
        queries: np.ndarray,
        rows: np.ndarray,
        valid: np.ndarray,
        stages: Sequence[tuple[int, int]],
        *,
        select_last: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        n = rows.shape[0]
        batch = np.arange(n)[:, None]
        # ||q[:dim]||^2 grows stage by stage (a cumsum over every column cost ~5 us a query at
        # d = 2048, a tenth of a 50-row rerank)
        q_sumsq = np.zeros(n, dtype=np.float32)
        need_sumsq = any(dim not in self.norm_column for dim, _ in stages)
        all_valid = bool(valid.all())
        dots = np.zeros(rows.shape, dtype=np.float32)
        z_sumsq = np.zeros(rows.shape, dtype=np.float32) if need_sumsq else None
        done = 0
        scores = None
        for j, (dim, size) in enumerate(stages):
            part, part_sq = self._gather_dot(rows, queries, done, dim, need_sumsq)
            q_part = queries[:, done:dim]
            q_sumsq += np.einsum("ij,ij->i", q_part, q_part)
            dots += part
            if need_sumsq:
                z_sumsq += part_sq
            done = dim
            column = self.norm_column.get(dim)
            z_norm = self.prefix_norms[rows, column] if column is not None else np.sqrt(z_sumsq)
            q_norm = np.sqrt(q_sumsq)[:, None]
            scores = dots / np.maximum(q_norm * z_norm, 1e-12)
            if not all_valid:
                scores[~valid] = -np.inf
            last = j == len(stages) - 1
            if size < rows.shape[1] and (select_last or not last):
                keep = top_along_rows(scores, size)
                rows, scores, dots = rows[batch, keep], scores[batch, keep], dots[batch, keep]
                if not all_valid:
                    valid = valid[batch, keep]
                if need_sumsq:
                    z_sumsq = z_sumsq[batch, keep]
        if all_valid:
            valid = np.ones(rows.shape, dtype=bool)
        return rows, scores, valid
