"""serving/retrieval/store_int8.py: the int8 store against NumPy, built, loaded and reranked."""

import numpy as np
import pytest
from retrieval_testing import normalized_prefix_scores
from tuning_testing import clustered, numpy_recall, numpy_topk

from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index
from mrl_keras.serving.retrieval.rerank import PrefixReranker
from mrl_keras.serving.retrieval.store_int8 import (
    SCALES_NAME,
    decode_rows,
    encode_int8,
    int8_scales,
    load_scales,
)


def test_codes_and_scales_against_numpy():
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    x[:, 3] = 0.0  # an all-zero column keeps a finite positive scale
    scales = int8_scales(x, 12)
    expected = np.abs(x[:, :12]).max(axis=0) / 127
    np.testing.assert_allclose(scales[scales > 1e-20], expected[expected > 0], rtol=1e-6)
    assert scales.shape == (12,) and np.all(scales > 0)
    codes = encode_int8(x[:, :12], scales)
    np.testing.assert_array_equal(codes, np.clip(np.round(x[:, :12] / scales), -127, 127))
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    decoded = decode_rows(codes, scales)
    assert np.abs(decoded - x[:, :12]).max() <= scales.max() / 2 + 1e-7


def test_decode_rows_of_every_dtype_and_errors():
    x = np.array([[1.5, -2.0]], np.float32)
    np.testing.assert_array_equal(decode_rows(x.astype(np.float16)), x)
    np.testing.assert_array_equal(decode_rows((x.view(np.uint32) >> 16).astype(np.uint16)), x)
    with pytest.raises(ValueError, match="scales to decode int8"):
        decode_rows(np.zeros((1, 2), np.int8))
    with pytest.raises(ValueError, match="float32, float16, bfloat16 or int8"):
        decode_rows(np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match="with an int8 store"):
        PrefixReranker(np.zeros((4, 3), np.int8))
    with pytest.raises(ValueError, match="NaN or Inf"):
        int8_scales(np.full((2, 2), np.nan), 2)


@pytest.fixture(scope="module")
def int8_index(tmp_path_factory):
    db = clustered(2000)
    path = build_index(
        tmp_path_factory.mktemp("i8") / "idx", db, shortlist_dim=8, store_dtype="int8"
    )
    return db, AdaptiveIndex.load(path)


def test_built_index_stores_codes_norms_and_scales(int8_index):
    db, index = int8_index
    scales = load_scales(index.path, "int8", 64)
    assert index.store.dtype == np.int8 and SCALES_NAME in index.manifest["files"]
    np.testing.assert_array_equal(index.store, encode_int8(db, int8_scales(db, 64)))
    decoded = decode_rows(index.store, scales)
    np.testing.assert_allclose(
        index.prefix_norms[:, index.norm_column(64)], np.linalg.norm(decoded, axis=1), rtol=1e-5
    )


def test_rerank_scores_are_cosines_of_the_decoded_rows(int8_index):
    db, index = int8_index
    retriever = AdaptiveRetriever(index)
    decoded = decode_rows(index.store, retriever.reranker.scales)
    q = clustered(20, stream=5)
    rows = np.tile(np.arange(0, 2000, 20), (20, 1))
    out_rows, scores, _ = retriever.reranker.rerank(
        q, rows, np.ones(rows.shape, bool), [(32, 30), (64, 10)]
    )
    expected = np.take_along_axis(normalized_prefix_scores(q, decoded, 64), out_rows, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # recall of the int8 store against exact float32 search: close to the float32 store's
    res = retriever.search_embeddings(
        q, 10, shortlist_size=400, leaves_to_search=index.scann_options["num_leaves"]
    )
    assert numpy_recall(np.asarray(res.ids), numpy_topk(db, q, 10)).mean() >= 0.97


def test_load_scales_refuses_a_missing_or_bad_file(tmp_path):
    assert load_scales(tmp_path, "float32", 4) is None
    with pytest.raises(ValueError, match="no readable"):
        load_scales(tmp_path, "int8", 4)
    np.save(tmp_path / SCALES_NAME, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        load_scales(tmp_path, "int8", 4)
