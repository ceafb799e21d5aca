"""Funnel retrieval (paper, section 4.3.1): the stages, the paper's schedule and their cost.

A funnel reranks the shortlist in stages `[(dim, size), ...]`: each stage scores the previous
stage's survivors with the re-normalised prefix `z[:dim]` and keeps the best `size`. The
paper's schedule halves the survivors and doubles the dim at every stage, ending at `d`; its
cost in exact-search multiply-adds per query is the shortlist's `N * D_s` plus each stage's
`survivors * dim` (the formula the benchmarks and the demo report, whatever the engine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_int", "funnel_mflops", "funnel_rerank_macs", "paper_funnel", "parse_funnel"]


def as_int(name: str, value: Any) -> int:
    """`value` as an int; TypeError naming `name` for a bool, float or anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Expected an int {name}. Received: {value!r}")
    return int(value)


def parse_funnel(funnel: Any) -> tuple[tuple[int, int], ...]:
    """Normalises a funnel given as `[(dim, size), ...]` or `[{"dim": .., "size": ..}, ...]`."""
    if isinstance(funnel, (str, bytes)) or not isinstance(funnel, Sequence) or len(funnel) == 0:
        raise ValueError(
            "Expected funnel as a non-empty list of [dim, size] stages, e.g. "
            f"[[32, 100], [64, 50], [128, 10]]. Received: {funnel!r}"
        )
    stages = []
    for stage in funnel:
        if isinstance(stage, dict):
            if set(stage) != {"dim", "size"}:
                raise ValueError(
                    f"Expected funnel stages with keys 'dim' and 'size'. Received: {stage!r}"
                )
            dim, size = stage["dim"], stage["size"]
        elif (
            isinstance(stage, Sequence) and not isinstance(stage, (str, bytes)) and len(stage) == 2
        ):
            dim, size = stage
        else:
            raise ValueError(f"Expected each funnel stage as [dim, size]. Received: {stage!r}")
        stages.append((as_int("funnel dim", dim), as_int("funnel size", size)))
    return tuple(stages)


def paper_funnel(d_s: int, d: int, shortlist: int = 200, k: int = 10) -> list[tuple[int, int]]:
    """The paper's funnel: halve the shortlist and double the dim at every stage, end at `d`.

    A stage that would keep fewer than `2 * k` survivors keeps `k` and is the last before `d`.

    Args:
        d_s: int. The shortlist dim `D_s`.
        d: int. The full dim, the last stage's.
        shortlist: int. The shortlist size `K`. Defaults to 200.
        k: int. Results per query. Defaults to 10.

    Returns:
        `[(dim, size), ...]`; for `D_s = 16, d = 2048, K = 200`:
        `[(32, 100), (64, 50), (128, 25), (256, 10), (2048, 10)]`.
    """
    stages, dim, size = [], 2 * d_s, shortlist // 2
    while dim < d:
        if size < 2 * k:
            stages.append((dim, k))
            break
        stages.append((dim, size))
        dim, size = 2 * dim, size // 2
    stages.append((d, k))
    return stages


def funnel_rerank_macs(shortlist: int, stages: Sequence[Sequence[int]]) -> float:
    """Rerank multiply-adds per query: each stage scores the previous stage's survivors at its
    dim, starting from the `shortlist` candidates."""
    cost, survivors = 0.0, shortlist
    for dim, size in stages:
        cost += survivors * dim
        survivors = size
    return cost


def funnel_mflops(n: int, d_s: int, shortlist: int, stages: Sequence[Sequence[int]]) -> float:
    """Exact-search MFLOPs per query of a funnel over `n` items: the shortlist (`n * d_s`) plus
    every stage's rerank."""
    return (float(n * d_s) + funnel_rerank_macs(shortlist, stages)) / 1e6
