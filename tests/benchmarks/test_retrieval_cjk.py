"""`--data cjk` of benchmarks/retrieval.py end to end at a tiny setting (the small font set)."""

import numpy as np
import pytest

from benchmarks import retrieval, retrieval_data

TINY = {
    "cjk_classes": 12,
    "cjk_train_per_class": 4,
    "cjk_test_per_class": 2,
    "cjk_image_size": 12,
    "holdout": 0.125,
    "d": 16,
    "width": 4,
    "epochs": 1,
    "batch_size": 16,
}


def test_cjk_dataset_trains_embeds_and_caches(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    data_dir = str(tmp_path / "cjk")
    ds = retrieval_data.cjk_dataset(cache, 10, fonts="small", data_dir=data_dir, **TINY)
    # 12 classes x 4 train, holdout 0.125 -> 42 database rows; 12 x 2 test rows, 10 kept
    assert ds.db.shape == (42, 16) and ds.db_labels.shape == (42,)
    assert ds.queries.shape == (10, 16) and ds.query_labels.shape == (10,)
    np.testing.assert_allclose(np.linalg.norm(ds.db, axis=1), 1.0, rtol=1e-5)
    assert set(ds.db_labels) == set(range(12))
    assert "12 classes" in ds.name and "42 x 16" in ds.name
    (npz,) = cache.glob("cjk_mrl_*_small.npz")

    # the second call reads the cache: no training
    def no_training(*args, **kwargs):
        raise AssertionError("trained again despite the cache")

    monkeypatch.setattr("mrl_keras.training.train", no_training)
    again = retrieval_data.cjk_dataset(cache, 10, fonts="small", data_dir=data_dir, **TINY)
    np.testing.assert_array_equal(again.db, ds.db)
    np.testing.assert_array_equal(again.queries, ds.queries)


def test_cjk_missing_fonts_names_the_setup_script(tmp_path, monkeypatch):
    from mrl_keras.training import cjk

    monkeypatch.setattr(cjk, "FONT_ROOT", str(tmp_path))
    with pytest.raises(SystemExit, match="scripts/setup_cjk.sh"):
        retrieval_data.cjk_dataset(tmp_path, 10)
    with pytest.raises(SystemExit, match="scripts/setup.sh"):
        retrieval_data.cjk_dataset(tmp_path, 10, fonts="small")


def test_load_dataset_dispatches_cjk(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        retrieval_data, "cjk_dataset", lambda cache, queries: seen.update(q=queries) or "ds"
    )
    args = retrieval.parse_args(["--data", "cjk", "--queries", "7", "--cache", str(tmp_path)])
    assert retrieval.load_dataset(args) == "ds" and seen == {"q": 7}
