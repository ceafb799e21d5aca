import json

import numpy as np
import pytest
from sharding_testing import exact_top_k, write_embedding_shards

from mrl_keras.serving.retrieval.embedding_shards import EmbeddingShardError
from mrl_keras.serving.retrieval.index import AdaptiveIndex, build_index
from mrl_keras.serving.retrieval.manifest import IndexIntegrityError, ModelVersionMismatchError
from mrl_keras.serving.retrieval.retriever import AdaptiveRetriever
from mrl_keras.serving.retrieval.sharded import (
    ShardedIndex,
    ShardedRetriever,
    build_sharded_index,
    is_sharded_index,
    merge_topk,
)

K = 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    ids, x = write_embedding_shards(root / "emb", n=1400, d=32, num_shards=14)
    queries = np.random.default_rng(9).normal(size=(12, 32)).astype(np.float32)
    return root, ids, x, queries


def test_merge_topk_orders_by_score_then_id():
    ids = [np.array([["b", "d"]]), np.array([["a", "c"]])]
    scores = [np.array([[0.9, 0.5]]), np.array([[0.9, -np.inf]])]
    got_ids, got_scores = merge_topk(ids, scores, 3)
    assert got_ids.tolist() == [["a", "b", "d"]]
    np.testing.assert_array_equal(got_scores, np.float32([[0.9, 0.9, 0.5]]))


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_sharded_equals_unsharded_exactly(corpus, shards):
    root, ids, x, queries = corpus
    out = build_sharded_index(
        root / f"s{shards}", root / "emb", shards=shards, shortlist_dim=8, processes=1
    )
    assert is_sharded_index(out)
    index = ShardedIndex.load(out, model_version=1)
    assert [s.count for s in index.shards] and sum(s.count for s in index.shards) == 1400
    retriever = ShardedRetriever(index)
    got = retriever.search_embeddings(queries, K, exact=True)
    # the unsharded index with the same exact settings, and NumPy
    single = build_index(root / f"u{shards}", x, ids, shortlist_dim=8)
    ref = AdaptiveRetriever(AdaptiveIndex.load(single)).search_embeddings(
        queries,
        K,
        None,
        1400,
        32,
        None,
        leaves_to_search=int(AdaptiveIndex.load(single).scann_options.get("num_leaves", 1)),
    )
    ref_ids, ref_scores = merge_topk([ref.ids], [ref.scores], K)
    np.testing.assert_array_equal(got.ids, ref_ids)
    np.testing.assert_array_equal(got.scores, ref_scores)
    np_ids, np_scores = exact_top_k(x, ids, queries, K)
    np.testing.assert_array_equal(got.ids, np_ids)
    np.testing.assert_allclose(got.scores, np_scores, atol=1e-5)
    retriever.close()


@pytest.mark.slow
def test_parallel_build_matches_sequential(corpus):
    root, _, _, queries = corpus
    a = build_sharded_index(root / "par", root / "emb", shards=2, shortlist_dim=8, processes=2)
    b = build_sharded_index(root / "seq", root / "emb", shards=2, shortlist_dim=8, processes=1)
    ra = ShardedRetriever(ShardedIndex.load(a)).search_embeddings(queries, K, exact=True)
    rb = ShardedRetriever(ShardedIndex.load(b)).search_embeddings(queries, K, exact=True)
    np.testing.assert_array_equal(ra.ids, rb.ids)


def test_versioned_builds_publish_the_next_version_read_only(corpus, tmp_path):
    import os

    root, *_ = corpus
    base = tmp_path / "indexes" / "corpus"
    first = build_sharded_index(
        base, root / "emb", shards=2, shortlist_dim=8, processes=1, versioned=True
    )
    second = build_sharded_index(
        base, root / "emb", shards=3, shortlist_dim=8, processes=1, versioned=True
    )
    assert (first, second) == (base / "1", base / "2")
    index = ShardedIndex.load(base)  # the newest version, all its shards together
    assert index.path == second and index.manifest["version"] == 2 and len(index.shards) == 3
    assert ShardedIndex.load(first).manifest["version"] == 1
    assert is_sharded_index(base)
    assert not os.access(second / "shard-00000" / "rerank.npy", os.W_OK) or os.geteuid() == 0
    assert not (second / "shard-00000" / "rerank.npy").stat().st_mode & 0o222
    with pytest.raises(ValueError, match="is an index itself"):
        build_sharded_index(
            second, root / "emb", shards=2, shortlist_dim=8, processes=1, versioned=True
        )


def test_bad_builds_and_loads_are_refused(corpus, tmp_path):
    root, *_ = corpus
    with pytest.raises(ValueError, match="fewer than --shards 20"):
        build_sharded_index(tmp_path / "x", root / "emb", shards=20, shortlist_dim=8)
    with pytest.raises(EmbeddingShardError, match="version 1, but version 2"):
        build_sharded_index(
            tmp_path / "x", root / "emb", shards=2, shortlist_dim=8, model_version=2
        )
    out = build_sharded_index(tmp_path / "s", root / "emb", shards=2, shortlist_dim=8, processes=1)
    with pytest.raises(ModelVersionMismatchError, match="version 1"):
        ShardedIndex.load(out, model_version=2)
    with pytest.raises(ValueError, match="verify in"):
        ShardedIndex.load(out, verify="sometimes")
    # a shard replaced by another index is refused, naming its manifest
    other = build_index(tmp_path / "other", np.eye(32, dtype=np.float32), shortlist_dim=8)
    manifest = json.loads((out / "manifest.json").read_text())
    victim = out / manifest["shards"][1]["name"]
    (victim / "manifest.json").write_bytes((other / "manifest.json").read_bytes())
    with pytest.raises(IndexIntegrityError, match=r"shard-00001/manifest.json: not the shard"):
        ShardedIndex.load(out)
    import shutil

    shutil.rmtree(victim)
    with pytest.raises(IndexIntegrityError, match="shard-00001 is missing"):
        ShardedIndex.load(out)


def test_fast_load_checks_sizes_and_background_finds_corruption(corpus, tmp_path):
    root, *_ = corpus
    out = build_sharded_index(tmp_path / "s", root / "emb", shards=2, shortlist_dim=8, processes=1)
    store = out / "shard-00000" / "rerank.npy"
    data = bytearray(store.read_bytes())
    data[-3] ^= 1
    store.write_bytes(bytes(data))
    index = ShardedIndex.load(out)  # fast: sizes are right
    errors = []
    thread, _ = index.verify_in_background(errors.append)
    thread.join(30)
    assert len(errors) == 1 and "shard-00000/rerank.npy: checksum mismatch" in str(errors[0])
    with pytest.raises(IndexIntegrityError, match="checksum mismatch for rerank.npy"):
        ShardedIndex.load(out, verify="full")
    store.write_bytes(bytes(data[:-4]))
    with pytest.raises(IndexIntegrityError, match=r"shard-00000/rerank.npy: \d+ bytes, expected"):
        ShardedIndex.load(out)


def test_shortlist_reorder_reaches_each_shard_capped_at_its_size(corpus):
    root, ids, x, queries = corpus
    out = build_sharded_index(
        root / "reorder", root / "emb", shards=3, shortlist_dim=8, processes=1
    )
    index = ShardedIndex.load(out, model_version=1)
    retriever = ShardedRetriever(index)
    got = {}
    for reorder in (20, 5000):  # 5000: more than any shard holds (capped, so every point)
        got[reorder] = retriever.search_embeddings(
            queries, K, shortlist_size=20, rerank_dim=8, shortlist_reorder=reorder
        )
        parts = [
            AdaptiveRetriever(shard).search_embeddings(
                queries, K, None, 20, 8, None, shortlist_reorder=min(reorder, shard.count)
            )
            for shard in index.shards
        ]
        ref_ids, ref_scores = merge_topk([p.ids for p in parts], [p.scores for p in parts], K)
        np.testing.assert_array_equal(got[reorder].ids, ref_ids)
        np.testing.assert_array_equal(got[reorder].scores, ref_scores)
    for bad in (0, 2.5, True, "20"):
        with pytest.raises(ValueError, match="shortlist_reorder to be a positive int"):
            retriever.search_embeddings(queries, K, shortlist_size=20, shortlist_reorder=bad)
    with pytest.raises(ValueError, match="shortlist_size=20 <= shortlist_reorder"):
        retriever.search_embeddings(queries, K, shortlist_size=20, shortlist_reorder=19)
    retriever.close()
