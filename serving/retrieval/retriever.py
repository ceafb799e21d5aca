"""Adaptive retrieval (paper, section 4.3.1): shortlist at `D_s` with ScaNN, rerank up to `D_r`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize
from mrl_keras.serving.retrieval.funnel import as_int, parse_funnel
from mrl_keras.serving.retrieval.index import AdaptiveIndex, check_model_version
from mrl_keras.serving.retrieval.rerank import PrefixReranker, sort_rows_descending, top_along_rows
from mrl_keras.serving.retrieval.shortlists import (
    search_shortlist,
    shortlist_dims,
    shortlist_options,
)
from mrl_keras.serving.retrieval.store_int8 import load_scales

DEFAULT_SHORTLIST_SIZE = 200


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Results of a batch of searches.

    Attributes:
        ids: `(n, k)` int64 or unicode ids, best first (-1 / "" where fewer than k were found).
        scores: `(n, k)` float32 cosine similarity at the last stage's prefix.
        model_version: version of the model that embedded the queries (None for raw embeddings).
        index_version: the index's content version.
    """

    ids: np.ndarray
    scores: np.ndarray
    model_version: int | None
    index_version: str


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    """A validated search: shortlist `shortlist_size` at `shortlist_dim`, then `stages`.

    `leaves_to_search` is the number of ScaNN leaves searched per query, or None for the
    index's default (`scann_options["num_leaves_to_search"]`). `shortlist_reorder` is how many
    asymmetric-hashing candidates ScaNN re-scores exactly at `D_s` before keeping the
    `shortlist_size` best (`shortlist_size <= shortlist_reorder`), or None for the shortlist's
    built default (`max(shortlist_size, scann_options["reorder_num_neighbors"])`).
    """

    k: int
    shortlist_dim: int
    shortlist_size: int
    stages: tuple[tuple[int, int], ...]
    leaves_to_search: int | None = None
    shortlist_reorder: int | None = None

    @property
    def max_dim(self) -> int:
        return self.stages[-1][0] if self.stages else self.shortlist_dim


def _check_leaves_to_search(value: Any, num_leaves: int) -> int | None:
    """Validates a per-request `leaves_to_search` against an index with `num_leaves` leaves.

    None keeps the index's default. Otherwise an int (not a bool) with
    `1 <= value <= num_leaves`; an index with a single leaf (no tree) accepts only 1.

    Raises:
        TypeError: not an int.
        ValueError: out of range.
    """
    if value is None:
        return None
    if num_leaves <= 1:
        allowed = "leaves_to_search=1 or None (this index has a single ScaNN leaf: no tree)"
    else:
        allowed = f"1 <= leaves_to_search <= {num_leaves} (the index's ScaNN leaves)"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"Expected an int leaves_to_search: {allowed}. Received: leaves_to_search={value!r}"
        )
    if not 1 <= int(value) <= max(num_leaves, 1):
        raise ValueError(f"Expected {allowed}. Received: leaves_to_search={int(value)}")
    return int(value)


class AdaptiveRetriever:
    """Adaptive retrieval and funnel retrieval over an `AdaptiveIndex`.

    One backend call embeds the queries at the largest prefix a search needs (`embed_{m}`); the
    shortlist is ScaNN over the re-normalised `z[:D_s]`; reranking scores the candidates with
    the re-normalised prefix at each stage: one stage at `D_r` (adaptive retrieval, AR) or a
    funnel, e.g. `[(32, 100), (64, 50), (128, 25), (256, 10), (2048, 10)]` after a shortlist of
    200 at 16 (section 4.3.1). Everything is batched over the queries.

    Args:
        index: an `AdaptiveIndex`.
        backend: a `ModelBackend` used by `search(inputs, ...)`; optional for
            `search_embeddings`.
        allow_version_mismatch: accept a backend serving another model version than the one
            that built the index.
        default_shortlist_size: shortlist size `K` when a search names none. Defaults to 200.

    Example:

    >>> index = mrl_keras.serving.AdaptiveIndex.load("/tmp/idx")              # doctest: +SKIP
    >>> retriever = mrl_keras.serving.AdaptiveRetriever(index, LocalModel(p)) # doctest: +SKIP
    >>> result = retriever.search(images, k=10, funnel=[(32, 100), (64, 10)]) # doctest: +SKIP
    """

    def __init__(
        self,
        index: AdaptiveIndex,
        backend: Any = None,
        *,
        allow_version_mismatch: bool = False,
        default_shortlist_size: int = DEFAULT_SHORTLIST_SIZE,
    ):
        if not isinstance(index, AdaptiveIndex):
            raise TypeError(f"Expected an AdaptiveIndex. Received: {type(index).__name__}")
        self.index = index
        self.backend = backend
        self.allow_version_mismatch = bool(allow_version_mismatch)
        self.default_shortlist_size = as_int("default_shortlist_size", default_shortlist_size)
        if self.default_shortlist_size < 1:
            raise ValueError(
                f"Expected default_shortlist_size >= 1. Received: {default_shortlist_size}"
            )
        self.reranker = PrefixReranker(
            index.store,
            index.prefix_norms,
            index.prefix_norm_dims,
            scales=load_scales(index.path, index.store_dtype, index.rerank_dim),
        )
        if backend is not None:
            info = backend.info()
            if info.embedding_dim < index.rerank_dim:
                raise ValueError(
                    f"The backend's model embeds {info.embedding_dim} dims but the index reranks at "
                    f"{index.rerank_dim}. Use the model the index was built with."
                )
            check_model_version(
                index.manifest, info.version, allow_mismatch=self.allow_version_mismatch
            )

    def plan(
        self,
        k: int = 10,
        shortlist_dim: int | None = None,
        shortlist_size: int | None = None,
        rerank_dim: int | None = None,
        funnel: Any = None,
        leaves_to_search: int | None = None,
        shortlist_reorder: int | None = None,
    ) -> SearchPlan:
        """Validates search arguments against the index; raises ValueError/TypeError naming the problem.

        Arguments left None take the index's tuned defaults (`manifest["search_defaults"]`,
        written by `mrl index tune`) where it has them: `shortlist_size` (at least `k`),
        `leaves_to_search`, `shortlist_reorder` (at least the shortlist size), and `rerank_dim`
        or `funnel` when neither is given (a tuned funnel whose last stage keeps fewer than `k`
        becomes a rerank at its last dim).
        """
        index = self.index
        tuned = index.manifest.get("search_defaults") or {}
        tuned_reorder = False
        if tuned:
            if shortlist_reorder is None and tuned.get("shortlist_reorder") is not None:
                shortlist_reorder, tuned_reorder = int(tuned["shortlist_reorder"]), True
            kk = k if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else 0
            if leaves_to_search is None:
                leaves_to_search = tuned.get("leaves_to_search")
            if shortlist_size is None and tuned.get("shortlist_size") is not None:
                shortlist_size = min(index.count, max(int(tuned["shortlist_size"]), int(kk)))
            if funnel is None and rerank_dim is None:
                if tuned.get("funnel"):
                    stages = [tuple(st) for st in tuned["funnel"]]
                    fits = shortlist_size is None or stages[0][1] <= shortlist_size
                    if stages[-1][1] >= kk and fits:
                        funnel = stages
                    else:
                        rerank_dim = stages[-1][0]
                elif tuned.get("rerank_dim") is not None:
                    rerank_dim = int(tuned["rerank_dim"])
        if shortlist_dim is None and tuned.get("shortlist_dim") is not None:
            shortlist_dim = int(tuned["shortlist_dim"])
        dims = shortlist_dims(index)
        d_s = (
            index.shortlist_dim if shortlist_dim is None else as_int("shortlist_dim", shortlist_dim)
        )
        if d_s not in dims:
            raise ValueError(
                f"Unknown shortlist_dim={shortlist_dim}: this index shortlists at {list(dims)} "
                "(rebuild it with --shortlist-dim, or add one with shortlists.add_shortlists)."
            )
        leaves = _check_leaves_to_search(
            leaves_to_search, int(shortlist_options(index, d_s).get("num_leaves", 1))
        )
        k = as_int("k", k)
        if not 1 <= k <= index.count:
            raise ValueError(f"Expected 1 <= k <= {index.count} (the corpus size). Received: k={k}")
        if funnel is not None and rerank_dim is not None:
            raise ValueError("Expected either rerank_dim or funnel, not both.")
        if funnel is not None:
            stages = parse_funnel(funnel)
        else:
            dim = index.rerank_dim if rerank_dim is None else as_int("rerank_dim", rerank_dim)
            if not d_s <= dim <= index.rerank_dim:
                raise ValueError(
                    f"Unknown rerank_dim={dim}: expected {d_s} <= rerank_dim <= {index.rerank_dim} "
                    "(the index's shortlist and rerank dims)."
                )
            stages = ((dim, k),) if dim > d_s else ()
        dims = [dim for dim, _ in stages]
        sizes = [size for _, size in stages]
        if stages:
            if (
                dims[0] <= d_s
                or any(b <= a for a, b in zip(dims, dims[1:], strict=False))
                or dims[-1] > index.rerank_dim
            ):
                raise ValueError(
                    f"Expected funnel dims strictly increasing within ({d_s}, {index.rerank_dim}] "
                    f"(after the shortlist dim, up to the rerank dim). Received: dims={dims}"
                )
            if any(b > a for a, b in zip(sizes, sizes[1:], strict=False)):
                raise ValueError(f"Expected funnel sizes non-increasing. Received: sizes={sizes}")
            if sizes[-1] < k:
                raise ValueError(f"Expected the last funnel size >= k={k}. Received: sizes={sizes}")
        if shortlist_size is None:
            size = min(index.count, max(self.default_shortlist_size, k, sizes[0] if sizes else 0))
        else:
            size = as_int("shortlist_size", shortlist_size)
            if not k <= size <= index.count:
                raise ValueError(
                    f"Expected k={k} <= shortlist_size <= {index.count} (the corpus size). "
                    f"Received: shortlist_size={size}"
                )
        if sizes and sizes[0] > size:
            raise ValueError(
                f"Expected funnel sizes <= shortlist_size={size}. Received: sizes={sizes}"
            )
        reorder = None
        if shortlist_reorder is not None:
            reorder = as_int("shortlist_reorder", shortlist_reorder)
            if tuned_reorder:  # a tuned count follows a larger shortlist this request asks for
                reorder = min(index.count, max(reorder, size))
            elif not size <= reorder <= index.count:
                raise ValueError(
                    f"Expected shortlist_size={size} <= shortlist_reorder <= {index.count} (the "
                    f"corpus size). Received: shortlist_reorder={reorder}"
                )
        return SearchPlan(
            k=k,
            shortlist_dim=d_s,
            shortlist_size=size,
            stages=tuple(stages),
            leaves_to_search=leaves,
            shortlist_reorder=reorder,
        )

    def _check_embeddings(self, embeddings: Any, plan: SearchPlan) -> np.ndarray:
        array = np.asarray(embeddings)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"Expected numeric embeddings. Received dtype {array.dtype}")
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(
                f"Expected embeddings of shape (n >= 1, dim). Received: shape {array.shape}"
            )
        if not plan.max_dim <= array.shape[1] <= self.index.embedding_dim:
            raise ValueError(
                f"Expected query embeddings with between {plan.max_dim} (the largest dim this "
                f"search uses) and {self.index.embedding_dim} (the index's d) columns. "
                f"Received: {array.shape[1]}"
            )
        array = array.astype(np.float32, copy=False)
        if not np.isfinite(array).all():
            raise ValueError("Expected finite query embeddings. Received NaN or Inf.")
        return array

    def search_embeddings(
        self,
        embeddings: Any,
        k: int = 10,
        shortlist_dim: int | None = None,
        shortlist_size: int | None = None,
        rerank_dim: int | None = None,
        funnel: Any = None,
        *,
        leaves_to_search: int | None = None,
        shortlist_reorder: int | None = None,
        model_version: int | None = None,
        plan: SearchPlan | None = None,
    ) -> SearchResult:
        """Searches with query embeddings `(n, >= max dim)` already computed (raw or normalised).

        Args:
            embeddings: `(n, m)` query embeddings, `m` at least the largest dim used.
            k: number of results per query, `1 <= k <= count`.
            shortlist_dim: must be the index's `D_s` (or None).
            shortlist_size: `K` candidates from ScaNN. Defaults to `max(200, k)`.
            rerank_dim: rerank at this prefix (`D_s <= rerank_dim <= D_r`; `D_s`: no rerank).
                Defaults to the index's `D_r`.
            funnel: `[(dim, size), ...]` stages instead of `rerank_dim`.
            leaves_to_search: ScaNN leaves searched per query, `1 <= leaves_to_search <=
                num_leaves` (only 1 on a single-leaf index): fewer is faster, more gives better
                recall. Defaults to the index's `scann_options["num_leaves_to_search"]`.
            shortlist_reorder: ScaNN re-scores this many asymmetric-hashing candidates exactly
                at `D_s` and keeps the `shortlist_size` best, `shortlist_size <=
                shortlist_reorder <= count`: fewer is faster (the rerank re-scores the
                shortlist anyway), more gives better recall. Defaults to the tuned value, else
                `max(shortlist_size, scann_options["reorder_num_neighbors"])`.
            model_version: recorded in the result.
            plan: a `SearchPlan` from `plan(...)`, used instead of the search arguments above
                (which are then ignored), for a caller that validated them already.

        Returns:
            A `SearchResult`.
        """
        if plan is None:
            plan = self.plan(
                k,
                shortlist_dim,
                shortlist_size,
                rerank_dim,
                funnel,
                leaves_to_search,
                shortlist_reorder,
            )
        queries = self._check_embeddings(embeddings, plan)
        return self._run(queries, plan, model_version)

    def search(
        self,
        inputs: Any,
        k: int = 10,
        shortlist_dim: int | None = None,
        shortlist_size: int | None = None,
        rerank_dim: int | None = None,
        funnel: Any = None,
        *,
        leaves_to_search: int | None = None,
        shortlist_reorder: int | None = None,
        timeout: float | None = None,
        plan: SearchPlan | None = None,
        backend: Any = None,
    ) -> SearchResult:
        """Embeds model inputs with one backend call at the largest prefix needed, then searches.

        Takes the arguments of `search_embeddings` (`leaves_to_search`, `shortlist_reorder` and
        `plan` included) plus
        `timeout`, the backend call's deadline in seconds, and `backend`, a `ModelBackend` to use
        instead of the retriever's own (the HTTP service passes its backend per request).

        Raises:
            ValueError: bad search arguments.
            ModelVersionMismatchError: the backend served another model version than the index's.
            BackendError: from the backend (unavailable, deadline, invalid input, ...).
        """
        backend = self.backend if backend is None else backend
        if backend is None:
            raise ValueError(
                "This retriever has no backend: use search_embeddings, or pass a backend."
            )
        if plan is None:
            plan = self.plan(
                k,
                shortlist_dim,
                shortlist_size,
                rerank_dim,
                funnel,
                leaves_to_search,
                shortlist_reorder,
            )
        result = backend.embed(inputs, plan.max_dim, timeout=timeout)
        served = getattr(result, "served_version", None)
        check_model_version(self.index.manifest, served, allow_mismatch=self.allow_version_mismatch)
        queries = self._check_embeddings(result.embeddings, plan)
        return self._run(queries, plan, served)

    def _run(
        self, queries: np.ndarray, plan: SearchPlan, model_version: int | None
    ) -> SearchResult:
        index = self.index
        head = l2_normalize(queries[:, : plan.shortlist_dim])
        rows, scores = search_shortlist(
            index,
            plan.shortlist_dim,
            head,
            plan.shortlist_size,
            plan.leaves_to_search,
            plan.shortlist_reorder,
        )
        valid = np.isfinite(scores)
        if plan.stages:
            rows, scores, valid = self.reranker.rerank(
                queries, rows, valid, plan.stages, select_last=False
            )
        batch = np.arange(rows.shape[0])[:, None]
        if scores.shape[1] > plan.k:
            top = top_along_rows(scores, plan.k)
            rows, scores, valid = rows[batch, top], scores[batch, top], valid[batch, top]
        order = sort_rows_descending(scores)
        rows, scores, valid = rows[batch, order], scores[batch, order], valid[batch, order]
        return SearchResult(
            ids=index.lookup_ids(rows, valid),
            scores=scores,
            model_version=model_version,
            index_version=index.index_version,
        )
