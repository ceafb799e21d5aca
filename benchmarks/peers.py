"""More retrieval contenders for `benchmarks/retrieval_peers.py`: the peers of issue 16.

Same interface as `benchmarks/contenders.py` (`name`, `build()`, `configs()`, `search()`,
`bytes_per_vector()`, `mflops()`, `bytes_touched()`, `close()`):

- `ScannFullAH`: single-shot ScaNN at full d with the AH dims per block as a parameter (one
  contender per value, so the sweep covers it) on top of the leaves x reorder grid.
- `TruncateScann` / `TruncateHnsw`: what `truncate_dim` users do — re-normalise `z[:m]` and
  search it single-shot (ScaNN tree + AH + reorder at m, or FAISS HNSW at m).
- `IvfPqRefine`: FAISS `IndexIVFPQ` shortlist + `IndexRefineFlat` full-d float32 rerank, the
  classic shortlist-and-rerank peer; nprobe x k_factor swept.
- `TunedAdaptive`: our index (`build_index`) with its search config chosen by the auto-tuner
  (`AdaptiveIndex.tune`) at each target recall on tuning queries disjoint from the benchmark
  queries — not by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, dir_bytes, log
from benchmarks.contenders import FaissHnsw, K, ScannFull, _Base, _ScannTree
from mrl_keras.retrieval_metrics import l2_normalize


def _prefix(db: np.ndarray, m: int, chunk: int = 65536) -> np.ndarray:
    out = np.empty((db.shape[0], m), np.float32)
    for s in range(0, db.shape[0], chunk):
        out[s : s + chunk] = l2_normalize(np.asarray(db[s : s + chunk, :m], np.float32))
    return out


class ScannFullAH(ScannFull):
    """Single-shot ScaNN at full d, AH with `dims_per_block` dims per 4-bit code."""

    def __init__(self, db, threads, num_leaves, work_dir, dims_per_block: int):
        super().__init__(db, threads, num_leaves, work_dir)
        self.dims_per_block = dims_per_block
        self.name = f"ScaNN single-shot (full d, AH {dims_per_block}/block)"

    def build(self) -> float:
        return self._build_tree(dims_per_block=self.dims_per_block)

    def bytes_touched(self, config):
        n, d = self.db.shape
        scanned = n * config["leaves_to_search"] / self.num_leaves
        return scanned * d / self.dims_per_block / 2 + config["reorder"] * d * 4


class TruncateScann(_ScannTree):
    """ScaNN single-shot over the re-normalised prefix `z[:m]` (tree + AH 2/block + reorder)."""

    def __init__(self, db, threads, num_leaves, work_dir, m: int):
        self.full, self.threads, self.num_leaves, self.work_dir, self.m = (
            db,
            threads,
            num_leaves,
            work_dir,
            m,
        )
        self.name = f"truncate z[:{m}] + ScaNN"
        self.searcher = None

    def build(self) -> float:
        self.db = _prefix(self.full, self.m)
        return self._build_tree(dims_per_block=2)

    def configs(self):
        nl = self.num_leaves
        leaves = sorted(
            {max(1, min(nl, round(nl * f))) for f in (0.01, 0.02, 0.04, 0.08, 0.16, 0.32)}
        )
        return [
            {"m": self.m, "leaves_to_search": lv, "reorder": r} for lv in leaves for r in (100, 400)
        ]

    def skip(self, config, rows):
        return any(
            r["recall"] >= 0.99 and r["config"]["leaves_to_search"] < config["leaves_to_search"]
            for r in rows
        )

    def search(self, queries, config):
        return super().search(l2_normalize(np.asarray(queries[:, : self.m], np.float32)), config)

    def mflops(self, config):
        return self.full.shape[0] * self.m / 1e6

    def bytes_touched(self, config):
        scanned = self.full.shape[0] * config["leaves_to_search"] / self.num_leaves
        return scanned * self.m / 4 + config["reorder"] * self.m * 4

    def close(self):
        self.searcher, self.db = None, None


class TruncateHnsw(FaissHnsw):
    """FAISS HNSW (M = 32) over the re-normalised prefix `z[:m]`."""

    def __init__(self, db, threads, m: int):
        super().__init__(db, threads)
        self.full, self.m = db, m
        self.name = f"truncate z[:{m}] + HNSW"

    def build(self):
        self.db = _prefix(self.full, self.m)
        return super().build()

    def search(self, queries, config):
        return super().search(l2_normalize(np.asarray(queries[:, : self.m], np.float32)), config)

    def close(self):
        self.index, self.db = None, None


def default_pq_subquantizers(d: int) -> int:
    """The IVF-PQ peer's default sub-quantizer count: the largest of 64, 32, ... dividing d."""
    return next(ms for ms in (64, 32, 16, 8, 4, 2, 1) if d % ms == 0 and ms <= d)


def fine_pq_subquantizers(d: int) -> int | None:
    """A finer PQ for large d: d / 8 sub-quantizers (8 dims each, at most 256), or None where
    that is not finer than the default (d <= 512). At d = 2048 the default 64 sub-quantizers of
    32 dims each capped recall@10 at 0.82 even after refining 200 candidates (2026-12-04)."""
    m = min(256, d // 8)
    return m if d % m == 0 and m > default_pq_subquantizers(d) else None


class IvfPqRefine(_Base):
    """FAISS IVF-PQ (nlist ~ sqrt N; PQ with `msub` sub-quantizers of 8 bits, 4 below 20k
    points; default up to 64) shortlist
    plus `IndexRefineFlat` (exact full-d float32 rerank of k * k_factor candidates)."""

    def __init__(self, db, threads, msub: int | None = None):
        import faiss

        self.faiss, self.db, self.threads = faiss, db, threads
        self.index = None
        d = db.shape[1]
        if msub is not None and (msub < 1 or d % msub):
            raise ValueError(f"Expected msub dividing d={d}. Received: {msub}")
        self.msub = default_pq_subquantizers(d) if msub is None else msub
        self.name = "FAISS IVF-PQ + RefineFlat (full d)" + ("" if msub is None else f", PQ{msub}")

    def build(self) -> float:
        faiss = self.faiss
        n, d = self.db.shape
        faiss.omp_set_num_threads(self.build_threads)
        self.nlist = max(1, int(round(np.sqrt(n))))
        self.nbits = 8 if n >= 20_000 else 4  # 256 centroids per sub-quantizer need data
        with Timer() as t:
            quantizer = faiss.IndexFlatIP(d)
            ivf = faiss.IndexIVFPQ(
                quantizer, d, self.nlist, self.msub, self.nbits, faiss.METRIC_INNER_PRODUCT
            )
            rng = np.random.default_rng(0)
            sample = np.asarray(
                self.db[np.sort(rng.choice(n, min(n, 100_000), replace=False))], np.float32
            )
            ivf.train(sample)
            self.index = faiss.IndexRefineFlat(ivf)
            for s in range(0, n, 65536):
                self.index.add(np.ascontiguousarray(self.db[s : s + 65536], np.float32))
        self._ivf, self._quantizer = ivf, quantizer
        self.build_cpu_s = t.cpu_seconds
        return t.seconds

    def configs(self):
        probes = sorted(
            {
                max(1, min(self.nlist, round(self.nlist * f)))
                for f in (0.005, 0.01, 0.02, 0.04, 0.08)
            }
        )
        return [{"nprobe": p, "k_factor": kf} for p in probes for kf in (4, 10, 20, 50, 100)]

    def skip(self, config, rows):
        return any(r["recall"] >= 0.995 and r["config"]["nprobe"] < config["nprobe"] for r in rows)

    def search(self, queries, config):
        faiss = self.faiss
        faiss.omp_set_num_threads(self.threads)
        faiss.extract_index_ivf(self.index).nprobe = config["nprobe"]
        self.index.k_factor = config["k_factor"]
        _, ids = self.index.search(np.ascontiguousarray(queries, np.float32), K)
        return ids.astype(np.int64)

    def bytes_per_vector(self):
        return self.db.shape[1] * 4 + self.msub * self.nbits / 8 + 8

    def mflops(self, config):
        return self.db.shape[0] * self.db.shape[1] / 1e6

    def bytes_touched(self, config):
        n, d = self.db.shape
        scanned = n * config["nprobe"] / self.nlist
        return scanned * self.msub * self.nbits / 8 + K * config["k_factor"] * d * 4

    def close(self):
        self.index = None


class TunedAdaptive(_Base):
    """`mrl_keras.serving` AR whose search configs come from `AdaptiveIndex.tune`, one per
    target recall, tuned on `tune_queries` (never the benchmark's queries)."""

    def __init__(
        self,
        db,
        threads,
        shortlist_dim,
        work_dir,
        tune_queries,
        store_dtype="bfloat16",
        targets=(0.9, 0.95, 0.98),
        cost="cpu",
        grid=None,
        extra_shortlists=(),
        leaves_factor: float = 1.0,
    ):
        self.db, self.threads, self.shortlist_dim = db, threads, shortlist_dim
        self.extra_shortlists = tuple(int(m) for m in extra_shortlists)
        self.work_dir, self.tune_queries, self.store_dtype = work_dir, tune_queries, store_dtype
        self.targets, self.cost, self.grid = targets, cost, grid
        self.leaves_factor = float(leaves_factor)
        dims = "+".join(str(m) for m in (shortlist_dim, *self.extra_shortlists))
        leaves = "" if self.leaves_factor == 1.0 else f"_leaves{self.leaves_factor:g}"
        self.path = work_dir / f"tuned_ar_ds{dims}_{store_dtype}{leaves}"
        self.name = f"AR auto-tuned (mrl index tune, {store_dtype} store)"
        if self.extra_shortlists:  # one index, one store, a ScaNN shortlist per D_s
            self.name = (
                f"AR auto-tuned (mrl index tune, {store_dtype} store, D_s {dims.replace('+', '/')})"
            )
        if self.leaves_factor != 1.0:
            self.name = self.name[:-1] + f", {self.leaves_factor:g} x sqrt(N) leaves)"
        self.tuned: list[dict[str, Any]] = []
        self.tune_s = 0.0

    def _leaf_options(self) -> dict[str, Any]:
        """The shortlists' tree at `leaves_factor` x sqrt(N) leaves, set explicitly (the index
        default is 2 x sqrt(N) since 2026-12-03; the runs saved before used 1 x); below 16,000
        points at factor 1: the default (no tree)."""
        n = self.db.shape[0]
        if self.leaves_factor == 1.0 and n < 16_000:
            return {}
        # the index derives leaves searched and the k-means sample from the leaf count
        return {"num_leaves": max(1, int(round(self.leaves_factor * np.sqrt(n))))}

    def build(self) -> float:
        from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever

        t = self._timed_build_index("bfloat16", self._leaf_options())
        if self.extra_shortlists:
            from mrl_keras.serving.retrieval.shortlists import add_shortlists

            with Timer() as ta:
                add_shortlists(
                    self.path,
                    self.extra_shortlists,
                    scann_options={
                        "training_threads": self.build_threads,
                        "reorder_dtype": "bfloat16",
                        **self._leaf_options(),
                    },
                )
            t.seconds += ta.seconds
            t.cpu_seconds += ta.cpu_seconds
        self.build_cpu_s = t.cpu_seconds
        index = AdaptiveIndex.load(self.path, verify=False)
        self.index = index
        from mrl_keras.serving.retrieval.tune import exact_topk_store

        with Timer() as tt:
            exact = exact_topk_store(index, self.tune_queries, K)
            for target in self.targets:
                result = index.tune(
                    self.tune_queries,
                    target_recall=target,
                    cost=self.cost,
                    heldout_fraction=0.3,
                    repeats=1,
                    exact=exact,
                    grid=self.grid,
                )
                log(f"  tuned for {target}: " + result.render().splitlines()[-2])
                if result.chosen is not None:
                    self.tuned.append(
                        dict(
                            result.search_defaults(),
                            D_s=result.chosen.config["shortlist_dim"],
                            target=target,
                            tune_recall=round(result.chosen.recall, 4),
                            heldout=round(result.heldout_recall, 4),
                        )
                    )
        self.tune_s = tt.seconds
        index.set_search_threads(self.threads)
        self.retriever = AdaptiveRetriever(index)
        return t.seconds

    def configs(self):
        return list(self.tuned)

    def row_overrides(self, config):
        return {"tune_s": self.tune_s}

    def search(self, queries, config):
        stages = (
            {"funnel": config["funnel"]}
            if "funnel" in config
            else {"rerank_dim": config["rerank_dim"]}
        )
        res = self.retriever.search_embeddings(
            queries,
            K,
            shortlist_dim=config["shortlist_dim"],
            shortlist_size=config["shortlist_size"],
            leaves_to_search=config["leaves_to_search"],
            shortlist_reorder=config.get("shortlist_reorder"),
            **stages,
        )
        return np.asarray(res.ids, np.int64)

    def bytes_per_vector(self):
        return dir_bytes(self.path) / self.db.shape[0]

    def mflops(self, config):
        from mrl_keras.serving.retrieval.funnel import funnel_mflops

        stages = config.get("funnel") or [(config["rerank_dim"], K)]
        d_s = config["shortlist_dim"]
        return funnel_mflops(self.db.shape[0], d_s, config["shortlist_size"], stages)

    def bytes_touched(self, config):
        from mrl_keras.serving.retrieval.tune import bytes_per_query

        return bytes_per_query(self.index, config)

    def close(self):
        self.retriever = self.index = None
        shutil.rmtree(self.path, ignore_errors=True)


def work_path(work: Path, name: str) -> Path:
    path = work / name
    path.mkdir(parents=True, exist_ok=True)
    return path
