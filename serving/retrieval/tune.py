"""The auto-tuner: the cheapest search config of an index that meets a recall target.

`tune_index(index, ...)` (also `AdaptiveIndex.tune`) measures a grid of search configs —
shortlist size `K`, rerank dim `D_r` or the paper's funnel from `K`, ScaNN leaves searched — on
tuning queries, each against the exact top-k over the index's own store (full `d` when the
index keeps `D_r = d`, the default), and picks the cheapest config whose recall@k meets the
target *with a margin*: the one-sided lower confidence bound `mean - z * sd / sqrt(n)` of the
per-query recall (z for `confidence`, 1.645 at 0.95) must reach `target_recall`. The cost is the
measured CPU time per query of a batched search on the calling thread (`cost="cpu"`), or the
bytes a query touches by the cost model below (`cost="bytes"`, deterministic). The choice is
then checked on held-out queries (never used to choose); `publish_tuned` writes it into the
manifest's `search_defaults` as a new index version, which the retriever (and so the HTTP
service) uses when a request names none.

The held-out queries also guard the choice against the winner's curse: the cheapest of many
configs near the target is likely one whose tuning recall came out high by chance (seen on the
1M real corpus: tuning 0.959, lower bound 0.951, held-out 0.948, fresh queries 0.944). So
the configs that meet the bound are checked on the held-out queries cheapest first, and the
first whose held-out recall reaches the target is chosen (at most `heldout_checks` of them;
none passing chooses nothing). Its held-out recall is then a selected number, no longer an
unbiased estimate: check fresh queries (the benchmark's own queries do) for that.

Queries: given (full embeddings, e.g. real user queries), or `sample` rows of the corpus itself,
decoded from the store, each searched for `k + 1` results with itself removed from both the
result and the exact answer (a row is always its own nearest neighbour).

Pruning: for a fixed rerank and leaves, a larger `K` costs more, and for a fixed `K` and rerank
more leaves cost more: once a config meets the target, the larger ones along those two axes
are not measured (they cannot be the cheapest). Measured points are all reported.

Over 400 lines because the tuner is one search with its parts side by side: the grid, the
cost measurement, the confidence bound, the Pareto front and the held-out check.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize
from mrl_keras.serving.retrieval.funnel import as_int, paper_funnel
from mrl_keras.serving.retrieval.shortlists import shortlist_dims, shortlist_options
from mrl_keras.serving.retrieval.store_int8 import decode_rows, load_scales

__all__ = [
    "TunePoint",
    "TuneResult",
    "bytes_per_query",
    "default_grid",
    "exact_topk_store",
    "pareto_front",
    "recall_per_query",
    "tune_index",
]

_STORE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclasses.dataclass(frozen=True)
class TunePoint:
    """One measured config: its search arguments, recall on the tuning queries (mean and lower
    confidence bound), CPU microseconds per query and modelled bytes touched per query."""

    config: dict[str, Any]
    recall: float
    recall_lcb: float
    cpu_us: float
    bytes: float
    cost: float

    def describe(self) -> str:
        c = self.config
        stages = f"funnel {c['funnel']}" if "funnel" in c else f"D_r {c['rerank_dim']}"
        reorder = (
            "" if c.get("shortlist_reorder") is None else f" (reorder {c['shortlist_reorder']})"
        )
        return (
            f"D_s {c['shortlist_dim']}, K {c['shortlist_size']}{reorder}, {stages}, leaves "
            f"{c['leaves_to_search']}: recall {self.recall:.4f} (lcb {self.recall_lcb:.4f}), "
            f"{self.cpu_us:.1f} us/query, {self.bytes / 1e3:.1f} kB/query"
        )


@dataclasses.dataclass(frozen=True)
class TuneResult:
    """What `tune_index` measured and chose.

    Attributes:
        chosen: the cheapest point whose recall lower bound meets the target on the tuning
            queries and whose recall on the held-out queries does too, or None.
        points: every measured point. `pareto`: those no other point beats in both cost and
            recall, cheapest first.
        heldout_recall, heldout_lcb: recall@k of `chosen` on the held-out queries (NaN if none).
        target_recall, k, confidence, cost, tuning_queries, heldout_queries, query_source.
        tuning_rows, heldout_rows: which of the queries (positions) tuned and which checked.
        heldout_rejected: `(point, held-out recall)` of the cheaper points that met the bound
            on the tuning queries but not the target on the held-out ones, cheapest first.
    """

    chosen: TunePoint | None
    points: list[TunePoint]
    pareto: list[TunePoint]
    heldout_recall: float
    heldout_lcb: float
    target_recall: float
    k: int
    confidence: float
    cost: str
    tuning_queries: int
    heldout_queries: int
    query_source: str
    tuning_rows: np.ndarray = dataclasses.field(repr=False, default=None)
    heldout_rows: np.ndarray = dataclasses.field(repr=False, default=None)
    heldout_rejected: list[tuple[TunePoint, float]] = dataclasses.field(default_factory=list)

    def search_defaults(self) -> dict[str, Any]:
        """The manifest's `search_defaults` of the chosen config (ValueError if none met)."""
        if self.chosen is None and self.heldout_rejected:
            raise ValueError(
                f"No config met recall@{self.k} >= {self.target_recall} on the held-out "
                f"queries: {len(self.heldout_rejected)} met the lower bound on the tuning "
                "queries, the cheapest first, and fell short on the held-out ones (best "
                f"{max(r for _, r in self.heldout_rejected):.4f}). Tune with more queries, "
                "a wider grid or a lower target."
            )
        if self.chosen is None:
            raise ValueError(
                f"No config met recall@{self.k} >= {self.target_recall} (lower bound at "
                f"confidence {self.confidence}); best measured recall "
                f"{max((p.recall for p in self.points), default=float('nan')):.4f}. Widen the "
                "grid (more leaves, larger shortlists) or lower the target."
            )
        c = self.chosen.config
        out = {
            "shortlist_dim": c["shortlist_dim"],
            "shortlist_size": c["shortlist_size"],
            "leaves_to_search": c["leaves_to_search"],
        }
        if c.get("shortlist_reorder") is not None:
            out["shortlist_reorder"] = c["shortlist_reorder"]
        out.update({"funnel": c["funnel"]} if "funnel" in c else {"rerank_dim": c["rerank_dim"]})
        return out

    def tuning_record(self) -> dict[str, Any]:
        """What the manifest records about the tuning (`tuning`)."""
        chosen = self.chosen
        return {
            "target_recall": self.target_recall,
            "k": self.k,
            "confidence": self.confidence,
            "cost": self.cost,
            "query_source": self.query_source,
            "tuning_queries": self.tuning_queries,
            "heldout_queries": self.heldout_queries,
            "recall": None if chosen is None else round(chosen.recall, 5),
            "recall_lcb": None if chosen is None else round(chosen.recall_lcb, 5),
            "heldout_recall": _round_or_none(self.heldout_recall),
            "heldout_recall_lcb": _round_or_none(self.heldout_lcb),
            "heldout_rejected": len(self.heldout_rejected),
            "cpu_us_per_query": None if chosen is None else round(chosen.cpu_us, 2),
            "bytes_per_query": None if chosen is None else round(chosen.bytes),
            "points_measured": len(self.points),
            "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def render(self) -> str:
        """The Pareto front and the choice, as text."""
        lines = [
            f"Pareto front (recall@{self.k} vs {self.cost} cost, {self.tuning_queries} tuning "
            f"queries, {len(self.points)} configs measured):"
        ]
        lines += [("* " if p is self.chosen else "  ") + p.describe() for p in self.pareto]
        lines += [
            f"rejected on the held-out queries (recall {r:.4f} < {self.target_recall}): "
            + p.describe()
            for p, r in self.heldout_rejected
        ]
        if self.chosen is None:
            lines.append(f"no config met the target {self.target_recall}")
        else:
            lines.append(
                f"chosen (cheapest with recall lcb >= {self.target_recall} at confidence "
                f"{self.confidence} and held-out recall >= {self.target_recall}): "
                f"{self.chosen.describe()}"
            )
            lines.append(
                f"held-out: recall {self.heldout_recall:.4f} (lcb {self.heldout_lcb:.4f}) on "
                f"{self.heldout_queries} queries"
            )
        return "\n".join(lines)


def _round_or_none(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 5)


def recall_per_query(found: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """`|found_i ∩ exact_i| / k` for each query (rows `(n, k)`; negative entries never match)."""
    k = exact.shape[1]
    hits = (found[:, :, None] == exact[:, None, :]) & (found[:, :, None] >= 0)
    return hits.any(axis=2).sum(axis=1) / k


def lower_bound(values: np.ndarray, confidence: float) -> float:
    """One-sided lower confidence bound of the mean (normal approximation)."""
    n = len(values)
    if n < 2:
        return float("-inf")
    z = statistics.NormalDist().inv_cdf(confidence)
    return float(values.mean() - z * values.std(ddof=1) / math.sqrt(n))


def exact_topk_store(index, queries: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """Exact top-k rows by cosine at the index's rerank dim, over its (decoded) store."""
    dim = index.rerank_dim
    scales = load_scales(index.path, index.store_dtype, dim)
    q = l2_normalize(np.asarray(queries[:, :dim], dtype=np.float32))
    column = index.norm_column(dim)
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.zeros((len(q), k), np.int64)
    for start in range(0, index.count, chunk):
        block = decode_rows(index.store[start : start + chunk], scales)
        norms = (
            index.prefix_norms[start : start + chunk, column]
            if column is not None
            else np.linalg.norm(block, axis=1)
        )
        s = (q @ block.T) / np.maximum(norms, 1e-12)
        kk = min(k, s.shape[1])
        idx = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], 1)
        cand_i = np.concatenate([best_i, idx + start], 1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def bytes_per_query(index, config: dict[str, Any]) -> float:
    """Modelled bytes a query touches: the AH codes of the searched leaves (one 4-bit code per
    `dims_per_block` dims of `D_s`), the shortlist's reordering of `shortlist_reorder` (default
    `max(K, reorder_num_neighbors)`) rows at `D_s`, and each rerank stage's new columns of its survivors in the store's dtype."""
    n, d_s = index.count, int(config["shortlist_dim"])
    opts = shortlist_options(index, d_s)
    nl = max(1, int(opts.get("num_leaves", 1)))
    lv = int(config["leaves_to_search"] or opts.get("num_leaves_to_search", nl))
    code = d_s / max(1, int(opts.get("dims_per_block", 1))) / 2
    reorder_bytes = {"float32": 4, "bfloat16": 2, "int8": 1}.get(
        opts.get("reorder_dtype", "float32"), 4
    )
    reordered = config.get("shortlist_reorder") or int(opts.get("reorder_num_neighbors", 0))
    reordered = max(int(config["shortlist_size"]), int(reordered))
    total = n * min(lv, nl) / nl * code + min(reordered, n) * d_s * reorder_bytes
    per_dim = _STORE_BYTES.get(index.store_dtype, 4)
    stages = config.get("funnel") or (
        [(config["rerank_dim"], 0)] if config["rerank_dim"] > d_s else []
    )
    survivors, done = int(config["shortlist_size"]), d_s
    for dim, size in stages:
        total += survivors * (dim - done) * per_dim
        survivors, done = size, dim
    return float(total)


def default_grid(index, k: int, shortlist_dim: int | None = None) -> dict[str, list]:
    """The grid `tune_index` searches by default at one shortlist dim (default the index's
    `D_s`): `K` from `k` up to 800 (at most the corpus), `D_r` in powers of two from `2 D_s`
    and the index's `D_r` (plus `D_s`: no rerank), the paper's funnel, 0.5-30% of that
    shortlist's ScaNN leaves, and ScaNN's exact reordering at `D_s` (`reorders`) of the
    shortlist's built count (None: `max(K, reorder_num_neighbors)`) or of 1 x K (re-scoring only
    the K kept: cheaper, the rerank re-scores them anyway); `shortlist_dims` lists every
    shortlist the index has."""
    d_s = index.shortlist_dim if shortlist_dim is None else int(shortlist_dim)
    d_r, count = index.rerank_dim, index.count
    sizes = sorted({s for s in (k, 25, 50, 100, 200, 400, 800) if k <= s <= count})
    dims, m = [d_s], 2 * d_s
    while m < d_r:
        dims.append(m)
        m *= 2
    if d_r > d_s:
        dims.append(d_r)
    nl = int(shortlist_options(index, d_s).get("num_leaves", 1))
    if nl <= 1:
        leaves = [1]
    else:
        fractions = (0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)
        leaves = sorted({max(1, min(nl, round(nl * f))) for f in fractions})
    return {
        "shortlist_dims": list(shortlist_dims(index)),
        "shortlist_sizes": sizes,
        "rerank_dims": dims,
        "leaves": leaves,
        "funnel": True,
        "reorders": [None, 1],
    }


def pareto_front(points: Sequence[TunePoint]) -> list[TunePoint]:
    """Points no other point beats in cost and recall (cheapest first)."""
    front, best = [], -1.0
    for p in sorted(points, key=lambda p: (p.cost, -p.recall)):
        if p.recall > best:
            front.append(p)
            best = p.recall
    return front


def _check_probability(name: str, value: Any, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"Expected a number {name} in (0, 1). Received: {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0 and not (value == 1.0 and name == "target_recall"):
        raise ValueError(f"Expected 0 < {name} <= 1. Received: {name}={value}")
    return value


def tune_index(
    index,
    queries: Any = None,
    *,
    sample: int | None = None,
    target_recall: float = 0.95,
    k: int = 10,
    confidence: float = 0.95,
    heldout_fraction: float = 0.5,
    heldout_checks: int = 16,
    cost: str = "cpu",
    grid: dict[str, Any] | None = None,
    repeats: int = 2,
    batch_size: int = 256,
    seed: int = 0,
    progress=None,
    exact: np.ndarray | None = None,
) -> TuneResult:
    """Finds the cheapest search config of `index` whose recall@k meets `target_recall`.

    Args:
        index: an `AdaptiveIndex`.
        queries: `(n, >= D_r)` query embeddings (full, as the model embeds them), or None to
            `sample` rows of the corpus.
        sample: number of corpus rows to use as queries when `queries` is None (default 1000,
            at most the corpus size minus `k`).
        target_recall: recall@k against exact search the chosen config must reach (its lower
            confidence bound must), in (0, 1].
        k: results per query.
        confidence: one-sided confidence of the recall bound, in (0, 1). Defaults to 0.95.
        heldout_fraction: share of the queries kept aside to check the choice. Defaults to 0.5.
        heldout_checks: at most this many configs (those meeting the bound, cheapest first)
            are checked on the held-out queries; the first reaching the target is chosen.
        cost: `"cpu"` (measured CPU time per query on one thread) or `"bytes"` (the model of
            `bytes_per_query`).
        grid: overrides of `default_grid(index, k)`: `shortlist_dims`, `shortlist_sizes`,
            `rerank_dims`, `leaves`, `funnel` (bool), `reorders` (each None or a positive int
            factor f: ScaNN re-scores f x K candidates at `D_s`).
        repeats: timed passes per config (the fastest is kept).
        batch_size: queries per batched search call while timing.
        seed: seeds the query sample and the held-out split.
        progress: optional callable `progress(points_done, text)`.
        exact: the exact top-k rows `(n, k)` of the given `queries`, when already computed
            (e.g. to tune one index at several targets); None computes them.

    Returns:
        A `TuneResult` (`render()` prints the Pareto front; `search_defaults()` is what
        `publish_tuned` writes).

    Raises:
        ValueError / TypeError: bad arguments, naming the problem.
    """
    from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever

    k = as_int("k", k)
    target_recall = _check_probability("target_recall", target_recall)
    confidence = _check_probability("confidence", confidence)
    heldout_fraction = _check_probability("heldout_fraction", heldout_fraction)
    heldout_checks = as_int("heldout_checks", heldout_checks)
    if heldout_checks < 1:
        raise ValueError(f"Expected heldout_checks >= 1. Received: {heldout_checks}")
    if cost not in ("cpu", "bytes"):
        raise ValueError(f"Expected cost 'cpu' or 'bytes'. Received: {cost!r}")
    repeats, batch_size = as_int("repeats", repeats), as_int("batch_size", batch_size)
    if repeats < 1 or batch_size < 1:
        raise ValueError(
            f"Expected repeats >= 1 and batch_size >= 1. Received: {repeats}, {batch_size}"
        )
    if not 1 <= k < index.count:
        raise ValueError(f"Expected 1 <= k < {index.count} (the corpus size). Received: k={k}")
    rng = np.random.default_rng(seed)
    self_rows = None
    if queries is None:
        sample = 1000 if sample is None else as_int("sample", sample)
        if not 4 <= sample <= index.count:
            raise ValueError(
                f"Expected 4 <= sample <= {index.count} (the corpus size). Received: sample={sample}"
            )
        self_rows = np.sort(rng.choice(index.count, sample, replace=False))
        scales = load_scales(index.path, index.store_dtype, index.rerank_dim)
        q = decode_rows(index.store[self_rows], scales)
        source = f"{sample} corpus rows sampled (seed {seed}), themselves excluded"
    else:
        if sample is not None:
            raise ValueError("Expected either queries or sample, not both.")
        q = np.asarray(queries)
        if q.dtype.kind not in "fiu" or q.ndim != 2 or q.shape[0] < 4:
            raise ValueError(
                f"Expected queries as a numeric (n >= 4, dim) array. Received: dtype {q.dtype}, "
                f"shape {q.shape}"
            )
        if not index.rerank_dim <= q.shape[1] <= index.embedding_dim:
            raise ValueError(
                f"Expected queries with between {index.rerank_dim} (the index's D_r) and "
                f"{index.embedding_dim} (its d) columns. Received: {q.shape[1]}"
            )
        q = q.astype(np.float32)
        if not np.isfinite(q).all():
            raise ValueError("Expected finite queries. Received NaN or Inf.")
        source = f"{len(q)} given queries"
    n = len(q)
    n_hold = int(round(n * heldout_fraction))
    if n - n_hold < 2 or n_hold < 2:
        raise ValueError(
            f"Expected at least 2 tuning and 2 held-out queries. Received: {n} queries with "
            f"heldout_fraction={heldout_fraction}"
        )
    unknown = set(grid or {}) - {
        "shortlist_dims",
        "shortlist_sizes",
        "rerank_dims",
        "leaves",
        "funnel",
        "reorders",
    }
    if unknown:
        raise ValueError(
            f"Unknown grid keys {sorted(unknown)}. Expected shortlist_dims, shortlist_sizes, "
            "rerank_dims, leaves, funnel, reorders."
        )
    for factor in (grid or {}).get("reorders") or ():
        if factor is not None and (
            isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1
        ):
            raise ValueError(
                "Expected grid reorders of None (the shortlist's built count) or positive int "
                f"factors of K. Received: {factor!r}"
            )
    g = default_grid(index, k) | dict(grid or {})
    g["_given"] = set(grid or {})
    search_k = k + 1 if self_rows is not None else k
    if exact is not None:
        if self_rows is not None or np.shape(exact) != (n, k):
            raise ValueError(
                f"Expected exact of shape {(n, k)} with given queries. Received: "
                f"{np.shape(exact)}{' with sample' if self_rows is not None else ''}"
            )
        exact = np.asarray(exact, dtype=np.int64)
    else:
        exact = exact_topk_store(index, q, search_k)
    if self_rows is not None:
        exact = _drop_self(exact, self_rows, k)
    perm = rng.permutation(n)
    tune_i, hold_i = np.sort(perm[n_hold:]), np.sort(perm[:n_hold])

    previous_threads = index.search_threads
    index.set_search_threads(1)
    retriever = AdaptiveRetriever(index)
    try:
        points = _measure_grid(
            retriever,
            index,
            q[tune_i],
            exact[tune_i],
            None if self_rows is None else self_rows[tune_i],
            g,
            k,
            search_k,
            target_recall,
            confidence,
            cost,
            repeats,
            batch_size,
            progress,
        )
        feasible = sorted(
            (p for p in points if p.recall_lcb >= target_recall),
            key=lambda p: (p.cost, -p.recall),
        )
        chosen, rejected = None, []
        held, held_lcb = float("nan"), float("nan")
        for point in feasible[:heldout_checks]:
            per_query = _recall_of(
                retriever,
                point.config,
                q[hold_i],
                exact[hold_i],
                None if self_rows is None else self_rows[hold_i],
                k,
                search_k,
            )
            if per_query.mean() >= target_recall:
                chosen = point
                held, held_lcb = float(per_query.mean()), lower_bound(per_query, confidence)
                break
            rejected.append((point, float(per_query.mean())))
    finally:
        index.set_search_threads(previous_threads)
    return TuneResult(
        chosen=chosen,
        points=points,
        pareto=pareto_front(points),
        heldout_recall=held,
        heldout_lcb=held_lcb,
        target_recall=target_recall,
        k=k,
        confidence=confidence,
        cost=cost,
        tuning_queries=len(tune_i),
        heldout_queries=len(hold_i),
        query_source=source,
        tuning_rows=tune_i,
        heldout_rows=hold_i,
        heldout_rejected=rejected,
    )


def _drop_self(rows: np.ndarray, self_rows: np.ndarray, k: int) -> np.ndarray:
    """Removes each query's own row from its `(n, k + 1)` results; keeps the first k others."""
    keep = rows != self_rows[:, None]
    out = np.full((len(rows), k), -1, np.int64)
    for i in range(len(rows)):
        r = rows[i][keep[i]]
        out[i, : min(k, len(r))] = r[:k]
    return out


def _configs(index, g: dict[str, Any], k: int, search_k: int):
    """The grid's configs grouped by (shortlist dim, rerank, leaves), each group in increasing
    `K`. Keys the caller did not give come from `default_grid` at each shortlist dim."""
    groups = []
    known = shortlist_dims(index)
    for d_s in g.get("shortlist_dims") or [index.shortlist_dim]:
        d_s = as_int("shortlist_dim", d_s)
        if d_s not in known:
            raise ValueError(f"Expected grid shortlist_dims among {list(known)}. Received: {d_s}")
        grid = default_grid(index, k, d_s) | {key: v for key, v in g.items() if key in g["_given"]}
        stages_list: list[dict[str, Any]] = []
        for dim in grid["rerank_dims"]:
            dim = as_int("rerank_dim", dim)
            if not min(known) <= dim <= index.rerank_dim:
                raise ValueError(
                    f"Expected grid rerank_dims within [{min(known)}, {index.rerank_dim}]. "
                    f"Received: {dim}"
                )
            if dim >= d_s:
                stages_list.append({"rerank_dim": dim})
        nl = int(shortlist_options(index, d_s).get("num_leaves", 1))
        leaves_list = sorted({min(max(1, nl), as_int("leaves", lv)) for lv in grid["leaves"]})
        built = int(shortlist_options(index, d_s).get("reorder_num_neighbors", 0))

        def reorder_of(size, factor, built=built):  # None: the built count (no key)
            if factor is None:
                return {}
            count = min(index.count, int(factor) * int(size))
            return {} if count == max(size, built) else {"shortlist_reorder": count}

        factors = list(dict.fromkeys(grid.get("reorders") or [None]))
        for leaves in leaves_list:
            for factor in factors:
                for stages in stages_list:
                    group = [
                        {
                            "shortlist_dim": d_s,
                            "shortlist_size": as_int("shortlist size", size),
                            "leaves_to_search": leaves,
                            **reorder_of(size, factor),
                            **stages,
                        }
                        for size in sorted(grid["shortlist_sizes"])
                        if search_k <= size <= index.count
                        if not (stages["rerank_dim"] == d_s and size != search_k)
                    ]
                    if factor is not None:  # the built count's configs are measured already
                        group = [c for c in group if "shortlist_reorder" in c]
                    groups.append(group)
                if grid.get("funnel") and index.rerank_dim >= 4 * d_s:
                    group = []
                    for size in sorted(grid["shortlist_sizes"]):
                        if not 2 * search_k <= size <= index.count:
                            continue
                        funnel = [
                            list(st) for st in paper_funnel(d_s, index.rerank_dim, size, search_k)
                        ]
                        config = {
                            "shortlist_dim": d_s,
                            "shortlist_size": int(size),
                            "leaves_to_search": leaves,
                            **reorder_of(size, factor),
                            "funnel": funnel,
                        }
                        if factor is None or "shortlist_reorder" in config:
                            group.append(config)
                    groups.append(group)
    return [grp for grp in groups if grp]


def _search_rows(retriever, config, search_k):
    args = (
        {"funnel": config["funnel"]} if "funnel" in config else {"rerank_dim": config["rerank_dim"]}
    )
    plan = retriever.plan(
        search_k,
        shortlist_dim=config["shortlist_dim"],
        shortlist_size=config["shortlist_size"],
        leaves_to_search=config["leaves_to_search"],
        shortlist_reorder=_reorder_count(retriever.index, config),
        **args,
    )
    return plan


def _reorder_count(index, config) -> int:
    """The config's ScaNN reorder count, explicit (never a tuned default of the index)."""
    if config.get("shortlist_reorder") is not None:
        return int(config["shortlist_reorder"])
    built = int(shortlist_options(index, config["shortlist_dim"]).get("reorder_num_neighbors", 0))
    return min(index.count, max(int(config["shortlist_size"]), built))


def _run_rows(retriever, plan, queries) -> np.ndarray:
    index = retriever.index
    result = retriever.search_embeddings(queries, plan=plan)
    ids = np.asarray(result.ids)
    if index.ids.dtype.kind == "i" and np.array_equal(index.ids, np.arange(index.count)):
        return ids.astype(np.int64)
    return _ids_to_rows(index, ids)


def _ids_to_rows(index, ids: np.ndarray) -> np.ndarray:
    lookup = getattr(index, "_tune_row_of", None)
    if lookup is None:
        lookup = {v: i for i, v in enumerate(index.ids.tolist())}
        index._tune_row_of = lookup
    return np.vectorize(lambda v: lookup.get(v, -1), otypes=[np.int64])(ids)


def _recall_of(retriever, config, queries, exact, self_rows, k, search_k) -> np.ndarray:
    rows = _run_rows(retriever, _search_rows(retriever, config, search_k), queries)
    if self_rows is not None:
        rows = _drop_self(rows, self_rows, k)
    return recall_per_query(rows[:, :k], exact)


def _measure_grid(
    retriever,
    index,
    q,
    exact,
    self_rows,
    g,
    k,
    search_k,
    target,
    confidence,
    cost,
    repeats,
    batch_size,
    progress,
) -> list[TunePoint]:
    points: list[TunePoint] = []
    met: list[dict[str, Any]] = []  # feasible configs, for the leaves pruning

    def dominated(config):  # same rerank and K, fewer leaves already met the target
        return any(
            m["shortlist_size"] == config["shortlist_size"]
            and m["shortlist_dim"] == config["shortlist_dim"]
            and m.get("rerank_dim") == config.get("rerank_dim")
            and m.get("shortlist_reorder") == config.get("shortlist_reorder")
            and ("funnel" in m) == ("funnel" in config)
            and m["leaves_to_search"] < config["leaves_to_search"]
            for m in met
        )

    groups = sorted(_configs(index, g, k, search_k), key=lambda grp: grp[0]["leaves_to_search"])
    for group in groups:
        for config in group:
            if dominated(config):
                continue
            plan = _search_rows(retriever, config, search_k)
            rows = _run_rows(retriever, plan, q[:8])  # warm-up
            best = float("inf")
            for _ in range(repeats if cost == "cpu" else 1):
                c0 = time.process_time()
                rows = np.concatenate(
                    [
                        _run_rows(retriever, plan, q[b : b + batch_size])
                        for b in range(0, len(q), batch_size)
                    ]
                )
                best = min(best, time.process_time() - c0)
            if self_rows is not None:
                rows = _drop_self(rows, self_rows, k)
            per_query = recall_per_query(rows[:, :k], exact)
            nbytes = bytes_per_query(index, config)
            cpu_us = best / len(q) * 1e6
            point = TunePoint(
                config=config,
                recall=float(per_query.mean()),
                recall_lcb=lower_bound(per_query, confidence),
                cpu_us=cpu_us,
                bytes=nbytes,
                cost=cpu_us if cost == "cpu" else nbytes,
            )
            points.append(point)
            if progress is not None:
                progress(len(points), point.describe())
            if point.recall_lcb >= target:
                met.append(config)
                break  # larger K in this group costs more
    return points
