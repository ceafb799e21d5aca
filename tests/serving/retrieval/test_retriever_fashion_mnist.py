"""Adaptive retrieval and funnel on Fashion-MNIST embeddings of a small MRL model: mAP@10
within 1 point of single-shot exact search at full d (paper, section 4.3.1)."""

import numpy as np
import pytest
from fashion_mnist_testing import data, embed

from mrl_keras.retrieval_metrics import map_at_k
from mrl_keras.serving import AdaptiveIndex, AdaptiveRetriever, build_index


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    x_train, y_train, x_test, y_test = data()
    db_x, db_y = x_train[10_000:30_000], y_train[10_000:30_000]  # unseen in training
    q_x, q_y = x_test[:2000], y_test[:2000]
    db, queries = embed(db_x), embed(q_x)
    out = tmp_path_factory.mktemp("fm") / "index"
    build_index(out, db, shortlist_dim=8, model_name="fashion_mnist", model_version=1)
    return AdaptiveRetriever(AdaptiveIndex.load(out)), db, db_y, queries, q_y


def test_adaptive_and_funnel_match_single_shot_full_d(setup):
    retriever, db, db_y, queries, q_y = setup
    sims = queries @ db.T
    top = np.argpartition(-sims, 10, axis=1)[:, :10]
    exact = np.take_along_axis(
        top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1
    )
    full = map_at_k(db_y[exact], q_y, db_y)
    ar = retriever.search_embeddings(queries, k=10, shortlist_size=200)
    funnel = retriever.search_embeddings(
        queries, k=10, shortlist_size=200, funnel=[(16, 100), (32, 50), (64, 10)]
    )
    shortlist_only = retriever.search_embeddings(queries, k=10, rerank_dim=8)
    map_ar, map_funnel = map_at_k(db_y[ar.ids], q_y, db_y), map_at_k(db_y[funnel.ids], q_y, db_y)
    map_8 = map_at_k(db_y[shortlist_only.ids], q_y, db_y)
    print(
        f"mAP@10 full d={full:.4f} AR 8->64={map_ar:.4f} funnel={map_funnel:.4f} single-shot 8={map_8:.4f}"
    )
    assert full > 0.6  # the model learned something
    assert map_ar >= full - 0.01
    assert map_funnel >= full - 0.01
