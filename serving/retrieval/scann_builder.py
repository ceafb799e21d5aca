"""ScaNN for the index: settings that scale with the corpus, their validation, and the builder.

ScaNN is imported on first use (`require_scann`): the scann package imports TensorFlow (and
with it Keras), which reading a manifest or the rerank store does not need.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

__all__ = [
    "REORDER_DTYPES",
    "build_searcher",
    "default_scann_options",
    "require_scann",
    "resolve_scann_options",
]


def require_scann():
    # Imported on first use: the scann package imports TensorFlow (and with it Keras), which
    # reading a manifest or the rerank store does not need.
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except ImportError as e:  # pragma: no cover - scann is a hard dependency
        raise ImportError(
            "The adaptive index needs ScaNN. Install it with `pip install scann==1.4.2`."
        ) from e
    return scann_ops_pybind


def default_scann_options(count: int, dim: int, shortlist_size: int = 200) -> dict[str, Any]:
    """ScaNN settings that scale with the corpus size.

    Tree partitioning with about `2 sqrt(count)` spherical leaves (none below 16,000 points),
    searching 10% of them, trained on 100 points per leaf (at least 50,000). Twice sqrt(count):
    at 200,000 x 2048 the auto-tuned AR was 1.01-1.74x faster at recall@10 0.95 and 0.89-1.84x
    at 0.98 than with sqrt(count) leaves (3 generator members; slow spectral decays gain most),
    and single-shot ScaNN's own best configs there use 2 sqrt(count) too (benchmarks/RESULTS.md,
    issue 16; indexes built before 2026-12-03 used sqrt(count)). Asymmetric hashing
    with 1 dimension per block up to `dim = 64` (2 above: a 32-d shortlist at 1M points keeps
    ~3% more of the exact neighbours for ~10% more scan time than with 2) and an anisotropic
    threshold of 0.2; exact float32 reordering of `shortlist_size` candidates (a search for
    more reorders as many as it asks for; with 1 dimension per block, reordering 2x more kept
    no more neighbours at 1M points). `reorder_dtype="bfloat16"` halves the reordering bytes
    (scores then carry bfloat16 rounding).

    Args:
        count: int. Number of points in the corpus.
        dim: int. The shortlist dimension `D_s`.
        shortlist_size: int. Default number of candidates the shortlist returns.

    Returns:
        A dict with every knob `build_index(..., scann_options=...)` accepts.
    """
    num_leaves = 1 if count < 16_000 else int(round(2 * math.sqrt(count)))
    return {
        "num_leaves": num_leaves,
        "num_leaves_to_search": max(1, int(math.ceil(num_leaves * 0.1))),
        "spherical": True,
        "training_sample_size": _training_sample_size(count, num_leaves),
        "dims_per_block": 1 if dim <= 64 else 2,
        "anisotropic_quantization_threshold": 0.2,
        "hash_type": "lut16",
        "num_neighbors": int(min(count, shortlist_size)),
        "reorder_num_neighbors": int(min(count, shortlist_size)),
        "reorder_dtype": "float32",
        "training_threads": 0,
    }


# ScaNN's exact reordering of the shortlist: the dtype it keeps the (count, D_s) prefix in.
REORDER_DTYPES = {"float32": "FLOAT32", "bfloat16": "BFLOAT16", "int8": "INT8"}


def _training_sample_size(count: int, num_leaves: int) -> int:
    """100 points per leaf, at least 50,000 (at most the corpus)."""
    return int(min(count, max(50_000, 100 * num_leaves)))


def resolve_scann_options(count: int, dim: int, overrides: dict[str, Any] | None) -> dict[str, Any]:
    options = default_scann_options(count, dim)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise ValueError(
            f"Unknown ScaNN option(s) {unknown}. Expected a subset of {sorted(options)}."
        )
    options.update(overrides)
    if "num_leaves" in overrides:  # what the defaults derive from the leaf count follows it
        if "num_leaves_to_search" not in overrides:
            options["num_leaves_to_search"] = max(1, int(math.ceil(options["num_leaves"] * 0.1)))
        leaves = options["num_leaves"]
        if "training_sample_size" not in overrides and isinstance(leaves, (int, np.integer)):
            options["training_sample_size"] = _training_sample_size(count, int(leaves))
    for key in (
        "num_leaves",
        "num_leaves_to_search",
        "num_neighbors",
        "reorder_num_neighbors",
        "dims_per_block",
        "training_sample_size",
    ):
        value = options[key]
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"Expected scann_options[{key!r}] to be a positive int. Received: {value!r}"
            )
        options[key] = int(value)
    if options["num_leaves_to_search"] > options["num_leaves"]:
        raise ValueError(
            "Expected num_leaves_to_search <= num_leaves. Received: "
            f"num_leaves_to_search={options['num_leaves_to_search']}, num_leaves={options['num_leaves']}"
        )
    if options["num_leaves"] > count:
        raise ValueError(
            f"Expected num_leaves <= count. Received: num_leaves={options['num_leaves']}, count={count}"
        )
    if options["reorder_dtype"] not in REORDER_DTYPES:
        raise ValueError(
            f"Expected reorder_dtype in {tuple(REORDER_DTYPES)}. "
            f"Received: {options['reorder_dtype']!r}"
        )
    if options["hash_type"] not in ("lut16", "lut256"):
        raise ValueError(
            f"Expected hash_type 'lut16' or 'lut256'. Received: {options['hash_type']!r}"
        )
    options["num_neighbors"] = min(options["num_neighbors"], count)
    options["reorder_num_neighbors"] = min(
        max(options["reorder_num_neighbors"], options["num_neighbors"]), count
    )
    options["training_sample_size"] = min(options["training_sample_size"], count)
    return options


def build_searcher(data: np.ndarray, options: dict[str, Any]):
    scann = require_scann()
    builder = scann.builder(data, options["num_neighbors"], "dot_product")
    if options["num_leaves"] > 1:
        builder = builder.tree(
            num_leaves=options["num_leaves"],
            num_leaves_to_search=options["num_leaves_to_search"],
            training_sample_size=options["training_sample_size"],
            spherical=bool(options["spherical"]),
        )
    builder = builder.score_ah(
        options["dims_per_block"],
        anisotropic_quantization_threshold=float(options["anisotropic_quantization_threshold"]),
        training_sample_size=options["training_sample_size"],
        hash_type=options["hash_type"],
    )
    from scann import ReorderType  # only reached once `require_scann` found ScaNN

    builder = builder.reorder(
        options["reorder_num_neighbors"],
        quantize=getattr(ReorderType, REORDER_DTYPES[options["reorder_dtype"]]),
    )
    threads = int(options["training_threads"]) or (os.cpu_count() or 1)
    return builder.set_n_training_threads(threads).build()
