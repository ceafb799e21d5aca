"""serving/retrieval/rerank_kernel.py: the compiled gather-and-dot against NumPy."""

import numpy as np
import pytest

from mrl_keras.serving.retrieval import rerank_kernel
from mrl_keras.serving.retrieval.rerank import PrefixReranker
from mrl_keras.serving.retrieval.store_codecs import from_bfloat16_bits, to_bfloat16_bits
from mrl_keras.serving.retrieval.store_int8 import encode_int8, int8_scales

pytestmark = pytest.mark.skipif(
    not rerank_kernel.available(), reason="no C compiler here: the NumPy path is used"
)


def _stores():
    x = np.random.default_rng(0).normal(size=(500, 40)).astype(np.float32)
    scales = int8_scales(x, 40)
    return {
        "float32": (x, x, None),
        "bfloat16": (to_bfloat16_bits(x), from_bfloat16_bits(to_bfloat16_bits(x)), None),
        "int8": (encode_int8(x, scales), encode_int8(x, scales) * scales, scales),
    }


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("start, stop", [(0, 40), (8, 24), (0, 1)])
def test_dots_and_norms_match_numpy(kind, start, stop):
    store, decoded, scales = _stores()[kind]
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 500, (7, 33))
    q = rng.normal(size=(7, 40)).astype(np.float32)
    qs = q[:, start:stop] * (1 if scales is None else scales[start:stop])
    dots, sumsq = rerank_kernel.gather_dot(store, rows, qs, start, stop, True, scales)
    z = decoded[rows][:, :, start:stop]
    np.testing.assert_allclose(
        dots, np.einsum("nkd,nd->nk", z, q[:, start:stop]), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(sumsq, np.square(z).sum(-1), rtol=1e-4, atol=1e-5)
    dots_only, none = rerank_kernel.gather_dot(store, rows, qs, start, stop, False, scales)
    np.testing.assert_allclose(dots_only, dots, rtol=1e-5, atol=1e-6)
    assert none is None


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8"])
def test_reranker_with_and_without_the_kernel_agree(kind):
    store, decoded, scales = _stores()[kind]
    norms = np.linalg.norm(decoded[:, :32], axis=1, keepdims=True).astype(np.float32)
    rng = np.random.default_rng(2)
    rows = np.stack([rng.choice(500, 60, replace=False) for _ in range(9)])
    q = rng.normal(size=(9, 40)).astype(np.float32)
    stages = [(16, 30), (32, 12), (40, 5)]
    fast = PrefixReranker(store, norms, (32,), scales=scales)
    slow = PrefixReranker(store, norms, (32,), scales=scales, use_kernel=False)
    assert fast.use_kernel and not slow.use_kernel
    a, b = (r.rerank(q, rows, np.ones(rows.shape, bool), stages) for r in (fast, slow))
    np.testing.assert_array_equal(np.sort(a[0], 1), np.sort(b[0], 1))
    np.testing.assert_allclose(np.sort(a[1], 1), np.sort(b[1], 1), rtol=1e-5, atol=1e-6)


def test_unsupported_stores_and_shapes_are_refused():
    with pytest.raises(ValueError, match="does not handle this store"):
        rerank_kernel.gather_dot(
            np.zeros((4, 4), np.float16),
            np.zeros((1, 1), np.int64),
            np.zeros((1, 4), np.float32),
            0,
            4,
            False,
        )
    with pytest.raises(ValueError, match=r"queries of shape \(1, 4\)"):
        rerank_kernel.gather_dot(
            np.zeros((4, 4), np.float32),
            np.zeros((1, 1), np.int64),
            np.zeros((1, 3), np.float32),
            0,
            4,
            False,
        )
    assert not PrefixReranker(np.zeros((4, 4), np.float16)).use_kernel  # float16: NumPy


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize(
    "n, k, width", [(1, 1, 5), (1, 3, 7), (2, 2, 16), (1, 5, 3000), (3, 9, 200)]
)
def test_every_candidate_scored_whatever_the_block_and_prefetch_distances(kind, n, k, width):
    # candidate counts below, at and off the 4-candidate block and the 6..24 prefetch distance
    # (narrow rows: far 24; rows over 12 KB: far 6), including the last partial block
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3000)).astype(np.float32)
    scales = int8_scales(x, 3000)
    store, decoded = {
        "float32": (x, x),
        "bfloat16": (to_bfloat16_bits(x), from_bfloat16_bits(to_bfloat16_bits(x))),
        "int8": (encode_int8(x, scales), encode_int8(x, scales) * scales),
    }[kind]
    s = scales if kind == "int8" else None
    rows = rng.integers(0, 300, (n, k))
    q = rng.normal(size=(n, width)).astype(np.float32)
    qs = q * (1 if s is None else s[:width])
    dots, sumsq = rerank_kernel.gather_dot(store, rows, qs, 0, width, True, s)
    z = decoded[rows][:, :, :width]
    np.testing.assert_allclose(dots, np.einsum("nkd,nd->nk", z, q), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(sumsq, np.square(z).sum(-1), rtol=1e-4, atol=1e-3)
