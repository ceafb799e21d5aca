"""Adaptive retrieval measured against single-shot search (paper, section 4.3.1, Figure 8).

Every contender searches the same database (the train set's embeddings from the exported
model) with the same queries (the test set's): exact single-shot search (BLAS scores and
`tf.math.top_k`) at each prefix, ScaNN single-shot at full `d` (an `mrl_keras.serving` index with `D_s = d`), adaptive
retrieval (AR: ScaNN shortlist of `K` at `D_s`, rerank at `D_r`) and the funnel, all through
`mrl_keras.serving.AdaptiveRetriever`. Quality is mAP@10 with class relevance; cost is the
paper's exact-search MFLOPs per query (`D_s * N + K * D_r`) and measured wall time.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize, map_at_k
from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index
from mrl_keras.serving.retrieval.funnel import funnel_mflops, paper_funnel

K_EVAL = 10


def map_at_10(ids: np.ndarray, y_db: np.ndarray, y_queries: np.ndarray) -> float:
    """mAP@10 with class relevance of ranked database rows (`-1`: no result)."""
    ids = np.asarray(ids, dtype=np.int64)
    labels = y_db[np.clip(ids, 0, None)]
    return map_at_k(labels, y_queries, y_db, k=K_EVAL, valid=ids >= 0)


def exact_search(queries: np.ndarray, db: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Exact cosine top-k (single-shot brute force): BLAS scores + `tf.math.top_k`, chunked.

    Returns:
        `(q, k)` int64 database rows, best first.
    """
    import tensorflow as tf

    db = l2_normalize(db)
    queries = l2_normalize(queries)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = tf.matmul(queries[start : start + chunk], db, transpose_b=True)
        out[start : start + chunk] = tf.math.top_k(scores, k).indices.numpy()
    return out


def best_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """The fastest of `repeats` runs of `fn` (seconds) and its last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def _row(kind: str, quality: float, mflops: float, seconds: float, queries: int, **extra):
    return {
        "kind": kind,
        "mAP@10": quality,
        "mflops_per_query": round(mflops, 4),
        "ms_per_query": round(1000.0 * seconds / queries, 4),
        **extra,
    }


def measure_retrieval(
    db: np.ndarray,
    y_db: np.ndarray,
    queries: np.ndarray,
    y_queries: np.ndarray,
    dims: Sequence[int],
    work_dir: str,
    shortlist_dims: Sequence[int],
    shortlist_size: int = 200,
    repeats: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Single-shot, AR and funnel retrieval over one database; the data of Figure 8.

    Args:
        db: `(N, d)` database embeddings. y_db: `(N,)` labels.
        queries: `(q, d)` query embeddings. y_queries: `(q,)` labels.
        dims: the nesting dims (single-shot sizes and rerank dims).
        work_dir: where the temporary indexes go (removed afterwards).
        shortlist_dims: the `D_s` to sweep; each gets an index, AR at every `D_r > D_s` in
            `dims` and a funnel.
        shortlist_size: `K`.
        repeats: timed passes per configuration (the fastest is kept).
        log: progress printer.

    Returns:
        dict with `database`, `queries`, `d`, `K`, `single_shot` (exact brute force at every dim and
        ScaNN at `d`), `ar` and `funnel` rows (`mAP@10`, `mflops_per_query`, `ms_per_query`).
    """
    n, d = db.shape
    q = len(queries)
    k = min(K_EVAL, n)
    shortlist_size = min(shortlist_size, n)
    os.makedirs(work_dir, exist_ok=True)
    out: dict[str, Any] = {
        "database": int(n),
        "queries": int(q),
        "d": int(d),
        "K": int(shortlist_size),
        "single_shot": [],
        "ar": [],
        "funnel": [],
    }
    for m in dims:
        # Exact search is the slow reference: timed once.
        seconds, idx = best_time(lambda m=m: exact_search(queries[:, :m], db[:, :m], k), 1)
        out["single_shot"].append(
            _row("exact", map_at_10(idx, y_db, y_queries), m * n / 1e6, seconds, q, dim=int(m))
        )
    log(
        "single-shot exact: "
        + ", ".join(f"{r['dim']}:{100 * r['mAP@10']:.2f}" for r in out["single_shot"])
    )

    path = os.path.join(work_dir, f"index_single_shot_{d}")
    build_index(path, db, shortlist_dim=d, rerank_dim=d, model_name="single_shot")
    single = AdaptiveRetriever(AdaptiveIndex.load(path, verify=False))
    seconds, result = best_time(
        lambda: single.search_embeddings(queries, k, shortlist_size=k, rerank_dim=d), repeats
    )
    out["single_shot"].append(
        _row("scann", map_at_10(result.ids, y_db, y_queries), d * n / 1e6, seconds, q, dim=int(d))
    )
    shutil.rmtree(path, ignore_errors=True)

    for d_s in shortlist_dims:
        path = os.path.join(work_dir, f"index_ds{d_s}")
        build_index(path, db, shortlist_dim=int(d_s), model_name="sweep")
        _sweep_one(
            AdaptiveRetriever(AdaptiveIndex.load(path, verify=False)),
            out, queries, y_db, y_queries, dims, int(d_s), shortlist_size, repeats,
        )  # fmt: skip
        log(
            f"D_s={d_s}: AR "
            + ", ".join(
                f"D_r={r['rerank_dim']}:{100 * r['mAP@10']:.2f}"
                for r in out["ar"]
                if r["shortlist_dim"] == d_s
            )
            + f"; funnel {100 * out['funnel'][-1]['mAP@10']:.2f}"
        )
        shutil.rmtree(path, ignore_errors=True)
    return out


def _sweep_one(retriever, out, queries, y_db, y_queries, dims, d_s, shortlist_size, repeats):
    """AR at every `D_r > D_s` and the funnel, over one index shortlisting at `d_s`."""
    n, d, q = out["database"], out["d"], len(queries)
    k = min(K_EVAL, n)
    for d_r in [m for m in dims if m > d_s]:
        seconds, result = best_time(
            lambda d_r=d_r: retriever.search_embeddings(
                queries, k, shortlist_size=shortlist_size, rerank_dim=int(d_r)
            ),
            repeats,
        )
        out["ar"].append(
            _row(
                "ar",
                map_at_10(result.ids, y_db, y_queries),
                (d_s * n + shortlist_size * d_r) / 1e6,
                seconds,
                q,
                shortlist_dim=d_s,
                rerank_dim=int(d_r),
            )
        )
    stages = paper_funnel(d_s, d, shortlist_size, k)
    seconds, result = best_time(
        lambda: retriever.search_embeddings(
            queries, k, shortlist_size=shortlist_size, funnel=stages
        ),
        repeats,
    )
    out["funnel"].append(
        _row(
            "funnel",
            map_at_10(result.ids, y_db, y_queries),
            funnel_mflops(n, d_s, shortlist_size, stages),
            seconds,
            q,
            shortlist_dim=d_s,
            stages=stages,
        )
    )
