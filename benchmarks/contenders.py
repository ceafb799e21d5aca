"""The retrieval contenders: each builds an index, then searches batches and single queries.

Every contender exposes `name`, `build() -> seconds`, `configs()` (the search-time settings
it sweeps), `search(queries, config) -> ids (n, k)`, `bytes_per_vector()`,
`mflops(config)` (the paper's exact-search cost formula, section 4.3 / Appendix I:
`N * D_s + sum_i K_i * D_i`, one multiply-add counted as one FLOP) and `close()`.

Over 400 lines because it holds every contender side by side (exact, ScaNN single-shot,
HNSW, ours, the fused ScaNN prototype), so their settings and cost formulas can be compared
in one place; each is a class of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, dir_bytes, log
from mrl_keras.serving.retrieval.funnel import funnel_mflops, paper_funnel

K = 10


def exact_topk(db: np.ndarray, queries: np.ndarray, k: int = K, chunk: int = 65536) -> np.ndarray:
    """Exact top-k by dot product (cosine for unit vectors), chunked over the database."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = q.shape[0]
    best_s = np.full((n, k), -np.inf, np.float32)
    best_i = np.zeros((n, k), np.int64)
    for start in range(0, db.shape[0], chunk):
        block = np.asarray(db[start : start + chunk], dtype=np.float32)
        s = q @ block.T
        kk = min(k, s.shape[1])
        idx = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], 1)
        cand_i = np.concatenate([best_i, idx + start], 1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


class _Base:
    """Threads used to build an index (`build_threads`) may differ from those searching it."""

    threads = 1
    _build_threads: int | None = None

    @property
    def build_threads(self) -> int:
        return self._build_threads or self.threads

    @build_threads.setter
    def build_threads(self, value: int | None) -> None:
        self._build_threads = value

    def _timed_build_index(
        self, reorder_dtype: str, scann_options: dict[str, Any] | None = None
    ) -> Timer:
        """Builds `self.db` into an AR index at `self.path` (`shortlist_dim`, `store_dtype`;
        `scann_options` override the defaults) and returns the `Timer` of the build."""
        from mrl_keras.serving import build_index

        with Timer() as t:
            build_index(
                self.path,
                self.db,
                shortlist_dim=self.shortlist_dim,
                store_dtype=self.store_dtype,
                model_name="benchmark",
                scann_options={
                    "training_threads": self.build_threads,
                    "reorder_dtype": reorder_dtype,
                    **(scann_options or {}),
                },
            )
        return t


class Exact(_Base):
    """Brute force at full d: NumPy float32 GEMM over the whole database (OpenBLAS)."""

    name = "exact (NumPy BLAS)"

    def __init__(self, db: np.ndarray, threads: int):
        self.db, self.threads = db, threads

    def build(self) -> float:
        return 0.0

    def configs(self) -> list[dict[str, Any]]:
        return [{}]

    def search(self, queries: np.ndarray, config: dict[str, Any]) -> np.ndarray:
        return exact_topk(self.db, queries)

    def bytes_per_vector(self) -> float:
        return 4.0 * self.db.shape[1]

    def mflops(self, config: dict[str, Any]) -> float:
        return self.db.shape[0] * self.db.shape[1] / 1e6

    def bytes_touched(self, config: dict[str, Any]) -> float:
        return 4.0 * self.db.shape[0] * self.db.shape[1]

    def close(self) -> None:
        pass


def _scann():
    from scann.scann_ops.py import scann_ops_pybind

    return scann_ops_pybind


def _scann_search(searcher, queries: np.ndarray, threads: int, **kwargs) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.shape[0] > 1 and threads > 1:
        ids, _ = searcher.search_batched_parallel(q, **kwargs)
    else:
        ids, _ = searcher.search_batched(q, **kwargs)
    return np.asarray(ids, dtype=np.int64)


class _ScannTree(_Base):
    """A contender answered by one ScaNN searcher: a tree over `self.num_leaves` leaves, AH
    scoring and reordering. Its configs name the leaves searched and the candidates reordered
    `leaves_key` and `reorder_key`."""

    leaves_key = "leaves_to_search"
    reorder_key = "reorder"

    def _build_tree(
        self, dims_per_block: int, truncate: int | None = None, quantize: str | None = None
    ) -> float:
        n = self.db.shape[0]
        data = np.asarray(self.db, dtype=np.float32)
        scann = _scann()  # imports TensorFlow: keep it out of the timed build
        reorder = {}
        if quantize is not None:
            from scann import ReorderType

            reorder["quantize"] = getattr(ReorderType, quantize)
        with Timer() as t:
            builder = scann.builder(data, K, "dot_product")
            if truncate is not None:
                builder = builder.truncate(truncate)
            self.searcher = (
                builder.tree(
                    num_leaves=self.num_leaves,
                    num_leaves_to_search=max(1, self.num_leaves // 10),
                    training_sample_size=min(n, 100_000),
                )
                .score_ah(
                    dims_per_block,
                    anisotropic_quantization_threshold=0.2,
                    training_sample_size=min(n, 100_000),
                )
                .reorder(200, **reorder)
                .set_n_training_threads(self.build_threads)
                .build()
            )
        self.searcher.set_num_threads(self.threads)
        self.build_cpu_s = t.cpu_seconds
        return t.seconds

    def search(self, queries: np.ndarray, config: dict[str, Any]) -> np.ndarray:
        return _scann_search(
            self.searcher,
            queries,
            self.threads,
            final_num_neighbors=K,
            leaves_to_search=config[self.leaves_key],
            pre_reorder_num_neighbors=config[self.reorder_key],
        )

    def bytes_per_vector(self) -> float:
        return _serialized_scann_bytes(self.searcher, self.work_dir) / self.db.shape[0]

    def close(self) -> None:
        self.searcher = None


class ScannFull(_ScannTree):
    """Single-shot ScaNN at full d: tree + asymmetric hashing + exact float32 reordering.

    The grid is `num_leaves` (build) x `leaves_to_search` x `pre_reorder_num_neighbors`.
    """

    name = "ScaNN single-shot (full d)"

    def __init__(self, db: np.ndarray, threads: int, num_leaves: int, work_dir: Path):
        self.db, self.threads, self.num_leaves = db, threads, num_leaves
        self.work_dir = work_dir
        self.searcher = None

    def build(self) -> float:
        return self._build_tree(dims_per_block=2)

    def configs(self) -> list[dict[str, Any]]:
        nl = self.num_leaves
        fractions = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.16, 0.32)
        leaves = sorted({max(1, min(nl, round(nl * f))) for f in fractions})
        return [
            {"num_leaves": nl, "leaves_to_search": lv, "reorder": r}
            for lv in leaves
            for r in (50, 100, 200, 400)
        ]

    def skip(self, config: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
        """Searching more leaves is pointless once fewer already reach recall 0.99."""
        return any(
            r["recall"] >= 0.99 and r["config"]["leaves_to_search"] < config["leaves_to_search"]
            for r in rows
        )

    def mflops(self, config: dict[str, Any]) -> float:
        return self.db.shape[0] * self.db.shape[1] / 1e6

    def bytes_touched(self, config: dict[str, Any]) -> float:
        """AH codes (d/2 blocks x 4 bits) of the searched leaves + float32 reordering."""
        n, d = self.db.shape
        scanned = n * config["leaves_to_search"] / self.num_leaves
        return scanned * d / 4 + config["reorder"] * d * 4


def _serialized_scann_bytes(searcher, work_dir: Path) -> int:
    path = Path(tempfile.mkdtemp(prefix="scann-size-", dir=work_dir))
    try:
        searcher.serialize(str(path))
        return dir_bytes(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


class FaissHnsw(_Base):
    """FAISS `IndexHNSWFlat` (M = 32, efConstruction 40) at full d, inner product; efSearch swept."""

    name = "FAISS HNSW (full d, M=32)"

    def __init__(self, db: np.ndarray, threads: int, m: int = 32):
        import faiss

        self.faiss = faiss
        self.db, self.threads, self.m = db, threads, m
        self.index = None

    def build(self) -> float:
        faiss = self.faiss
        faiss.omp_set_num_threads(self.build_threads)
        n, d = self.db.shape
        with Timer() as t:
            self.index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
            step = 50_000
            for start in range(0, n, step):
                self.index.add(np.ascontiguousarray(self.db[start : start + step], np.float32))
                if n > step:
                    log(f"  HNSW add {min(n, start + step)}/{n} ({t_elapsed(t):.0f} s)")
        self.build_cpu_s = t.cpu_seconds
        return t.seconds

    def configs(self) -> list[dict[str, Any]]:
        # from k (FAISS searches max(efSearch, k)) in steps as fine as AR's grid: on the 1M x
        # 2048 real corpus efSearch 16, the earlier floor, already gave recall 0.953
        return [{"efSearch": ef} for ef in (10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 256, 512)]

    def skip(self, config: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
        """A larger efSearch is pointless once a smaller one reaches recall 0.995."""
        return any(r["recall"] >= 0.995 for r in rows)

    def search(self, queries: np.ndarray, config: dict[str, Any]) -> np.ndarray:
        self.faiss.omp_set_num_threads(self.threads)
        self.index.hnsw.efSearch = config["efSearch"]
        _, ids = self.index.search(np.ascontiguousarray(queries, np.float32), K)
        return ids.astype(np.int64)

    def bytes_per_vector(self) -> float:
        h = self.index.hnsw
        graph = h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
        return (self.index.ntotal * self.db.shape[1] * 4 + graph) / self.index.ntotal

    def mflops(self, config: dict[str, Any]) -> float:
        return self.db.shape[0] * self.db.shape[1] / 1e6

    def bytes_touched(self, config: dict[str, Any]) -> float:
        """Full-d float32 vectors of the measured distance computations per query."""
        return config.get("_ndis", float("nan")) * self.db.shape[1] * 4

    def close(self) -> None:
        self.index = None


def t_elapsed(timer: Timer) -> float:
    import time

    return time.perf_counter() - timer._start


class OurAdaptive(_Base):
    """`mrl_keras.serving` AdaptiveRetriever over a `build_index` directory (one per D_s).

    The store keeps `z[:D_r]` with D_r = d; the grid sweeps the shortlist size K and the rerank
    dim, plus the paper's funnel. With `kernels`, the same index (same ScaNN shortlist) is also
    searched with the benchmark-local rerank stores of `ar_prototypes` ("bfloat16", "int8").
    """

    def __init__(
        self,
        db: np.ndarray,
        threads: int,
        shortlist_dim: int,
        work_dir: Path,
        store_dtype: str = "float32",
        shortlist_sizes: tuple[int, ...] = (100, 200, 400),
        kernels: tuple[str, ...] = (),
        reorder_dtype: str = "float32",
    ):
        self.db, self.threads, self.shortlist_dim = db, threads, shortlist_dim
        self.store_dtype, self.shortlist_sizes = store_dtype, shortlist_sizes
        self.reorder_dtype = reorder_dtype
        self.kernels = kernels
        self.path = work_dir / f"ar_index_ds{shortlist_dim}_{store_dtype}"
        self.name = f"AR (mrl_keras.serving, {store_dtype} store)"
        self.retriever = None
        self.rerankers: dict[str, Any] = {}
        self.extra: dict[str, dict[str, float]] = {}

    def build(self) -> float:
        from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever

        t = self._timed_build_index(self.reorder_dtype)
        index = AdaptiveIndex.load(self.path, verify=False)
        index.set_search_threads(self.threads)
        self.retriever = AdaptiveRetriever(index)
        self.rerankers = {"native": self.retriever.reranker}
        base_bytes = dir_bytes(self.path)
        for kind in self.kernels:
            from benchmarks.ar_prototypes import QuantizedPrefixReranker, quantize_store

            with Timer() as tq:
                codes, scales = quantize_store(index.store, kind)
            self.rerankers[kind] = QuantizedPrefixReranker(
                codes, scales, index.prefix_norms, index.prefix_norm_dims
            )
            size = base_bytes - index.store.nbytes + codes.nbytes
            size += 0 if scales is None else scales.nbytes
            self.extra[kind] = {
                "build_s": t.seconds + tq.seconds,
                "build_cpu_s": t.cpu_seconds + tq.cpu_seconds,
                "bytes_per_vector": size / self.db.shape[0],
            }
        self.build_cpu_s = t.cpu_seconds
        return t.seconds

    def configs(self) -> list[dict[str, Any]]:
        d, d_s, n = self.db.shape[1], self.shortlist_dim, self.db.shape[0]
        rerank_dims = sorted({d} | {m for m in (d // 8, d // 4) if m >= 2 * d_s})
        out = [
            {"D_s": d_s, "K": size, "D_r": d_r}
            for size in self.shortlist_sizes
            for d_r in rerank_dims
            if size <= n
        ]
        if 200 <= n:
            out.append({"D_s": d_s, "K": 200, "funnel": paper_funnel(d_s, d, k=K)})
            # ScaNN leaves searched for the shortlist (the index's default is 10% of the
            # leaves), through the retriever's per-request `leaves_to_search`.
            nl = int(self.retriever.index.scann_options["num_leaves"]) if self.retriever else 1
            leaves = sorted({max(1, round(nl * f)) for f in (0.035, 0.05, 0.07, 0.2)})
            for lv in leaves if nl > 1 else ():
                for size in (100, 200):
                    for d_r in rerank_dims[:2]:
                        out.append({"D_s": d_s, "K": size, "D_r": d_r, "leaves": lv})
                out.append(
                    {"D_s": d_s, "K": 200, "leaves": lv, "funnel": paper_funnel(d_s, d, k=K)}
                )
        variants = [dict(c, kernel=kind) for kind in self.kernels for c in out]
        return out + variants

    def row_overrides(self, config: dict[str, Any]) -> dict[str, Any]:
        kind = config.get("kernel")
        if kind is None:
            return {}
        label = {"bfloat16": "bf16", "int8": "int8"}[kind]
        return {"method": f"AR prototype (serving + NumPy {label} store)", **self.extra[kind]}

    def search(self, queries: np.ndarray, config: dict[str, Any]) -> np.ndarray:
        self.retriever.reranker = self.rerankers[config.get("kernel", "native")]
        stages = (
            {"funnel": config["funnel"]} if "funnel" in config else {"rerank_dim": config["D_r"]}
        )
        result = self.retriever.search_embeddings(
            queries,
            K,
            shortlist_size=config["K"],
            leaves_to_search=config.get("leaves"),
            **stages,
        )
        return np.asarray(result.ids, dtype=np.int64)

    def bytes_per_vector(self) -> float:
        return dir_bytes(self.path) / self.db.shape[0]

    def mflops(self, config: dict[str, Any]) -> float:
        n = self.db.shape[0]
        if "funnel" in config:
            return funnel_mflops(n, config["D_s"], config["K"], config["funnel"])
        return (n * config["D_s"] + config["K"] * config["D_r"]) / 1e6

    def bytes_touched(self, config: dict[str, Any]) -> float:
        """Shortlist (AH codes of the searched leaves, reordering of max(K, reorder) rows at
        D_s) plus the rerank store bytes of each stage's survivors (prefix slices only)."""
        n, d_s = self.db.shape[0], config["D_s"]
        opts = self.retriever.index.scann_options
        nl = int(opts["num_leaves"])
        lv = config.get("leaves") or int(opts["num_leaves_to_search"])
        per_dim = {"bfloat16": 2, "int8": 1}.get(config.get("kernel"), 4)
        if self.store_dtype in ("float16", "bfloat16") and "kernel" not in config:
            per_dim = 2
        code_bytes = d_s / int(opts["dims_per_block"]) / 2  # one 4-bit code per block
        reordered = max(config["K"], int(opts["reorder_num_neighbors"]))
        reorder_bytes = {"float32": 4, "bfloat16": 2, "int8": 1}[
            opts.get("reorder_dtype", "float32")
        ]
        shortlist = n * lv / nl * code_bytes + reordered * d_s * reorder_bytes
        stages = config.get("funnel") or [(config["D_r"], K)]
        survivors, done, rerank = config["K"], 0, 0.0
        for dim, size in stages:
            rerank += survivors * (dim - done) * per_dim
            survivors, done = size, dim
        return shortlist + rerank

    def close(self) -> None:
        self.retriever = None
        self.rerankers = {}
        shutil.rmtree(self.path, ignore_errors=True)


class FusedScannAR(_ScannTree):
    """Prototype kernel: AR inside one ScaNN searcher (shortlist at D_s, rerank at D_r in C++).

    ScaNN 1.4's `truncate(D_s)` projection makes the tree and the asymmetric hashing see only
    `z[:D_s]`, while exact reordering (`reorder(K, BFLOAT16)`) rescores the K shortlisted
    candidates with the full stored `z[:D_r]` in bfloat16 (2 bytes a dimension), batched and
    multi-threaded in C++: no Python gather, no float16 conversion. K is ScaNN's
    `pre_reorder_num_neighbors`.
    """

    leaves_key = "leaves"
    reorder_key = "K"
    name = "AR prototype (ScaNN truncate + bf16 reorder)"

    def __init__(
        self,
        db: np.ndarray,
        threads: int,
        shortlist_dim: int,
        work_dir: Path,
        num_leaves: int,
        shortlist_sizes: tuple[int, ...] = (100, 200, 400),
        quantize: str = "BFLOAT16",
    ):
        self.db, self.threads, self.shortlist_dim = db, threads, shortlist_dim
        self.work_dir, self.num_leaves = work_dir, num_leaves
        self.shortlist_sizes, self.quantize = shortlist_sizes, quantize
        self.searcher = None

    def build(self) -> float:
        return self._build_tree(
            dims_per_block=1, truncate=self.shortlist_dim, quantize=self.quantize
        )

    def configs(self) -> list[dict[str, Any]]:
        nl = self.num_leaves
        leaves = sorted({max(1, min(nl, round(nl * f))) for f in (0.05, 0.1, 0.2)})
        return [
            {"D_s": self.shortlist_dim, "K": size, "D_r": self.db.shape[1], "leaves": lv}
            for lv in leaves
            for size in self.shortlist_sizes
            if size <= self.db.shape[0]
        ]

    def mflops(self, config: dict[str, Any]) -> float:
        return (self.db.shape[0] * config["D_s"] + config["K"] * config["D_r"]) / 1e6

    def bytes_touched(self, config: dict[str, Any]) -> float:
        """AH codes (D_s blocks x 4 bits) of the searched leaves + bfloat16 reordering at D_r."""
        n = self.db.shape[0]
        scanned = n * config["leaves"] / self.num_leaves
        return scanned * config["D_s"] / 2 + config["K"] * config["D_r"] * 2


def default_num_leaves(n: int) -> int:
    """About sqrt(N) leaves (ScaNN's usual rule), at least 1."""
    return max(1, int(round(np.sqrt(n))))


def threads_env(threads: int) -> dict[str, str]:
    """Environment that pins BLAS/OpenMP pools to `threads` (set before NumPy is imported)."""
    return {
        name: str(threads)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    } | {"TF_NUM_INTRAOP_THREADS": str(threads)}


def env_threads_ok(threads: int) -> bool:
    return os.environ.get("OPENBLAS_NUM_THREADS") == str(threads)
