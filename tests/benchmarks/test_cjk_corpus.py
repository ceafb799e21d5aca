"""benchmarks/cjk_corpus.py: seeded, regenerable augmented renders (needs the small CJK fonts)."""

import numpy as np
import pytest

from benchmarks import cjk_corpus

# The small CJK fonts come with scripts/setup.sh (as for tests/training/test_cjk.py): a missing
# font is a broken setup and fails here rather than skipping.
FACES, TRAIN, TEST, CHARS = cjk_corpus.corpus_setup(classes=20, fonts="small")


def test_items_are_regenerable_one_by_one_and_augmented():
    r = cjk_corpus.GlyphRenderer(FACES, 24)
    x, y = cjk_corpus.generate_images(r, CHARS, TRAIN, 0, 45, seed=0, stream=1)
    assert x.shape == (45, 24, 24, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and y.tolist() == [i % 20 for i in range(45)]
    again, _ = cjk_corpus.generate_images(r, CHARS, TRAIN, 30, 31, seed=0, stream=1)
    np.testing.assert_array_equal(again[0], x[30])
    # same class (items 0, 20, 40), different augmentation and face: different images
    assert not np.array_equal(x[0], x[20]) and not np.array_equal(x[20], x[40])
    other, _ = cjk_corpus.generate_images(r, CHARS, TRAIN, 0, 1, seed=1, stream=1)
    assert not np.array_equal(other[0], x[0])


def test_augmentation_ranges():
    aug = cjk_corpus.augmentation(np.random.default_rng(3))
    assert set(aug) == {"scale", "angle", "dx", "dy", "stroke", "noise"}
    assert 0.55 <= aug["scale"] <= 0.9 and abs(aug["angle"]) <= 15 and 0 <= aug["stroke"] <= 2


def test_bad_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="n >= 1"):
        cjk_corpus.build_corpus(0, 10, tmp_path)


def _tiny_model(path):
    import keras

    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(8, name="embedding")(x)
    keras.Model(inputs, keras.layers.Dense(20)(x)).save(path)
    return path


def test_worker_processes_build_the_same_corpus_as_one(tmp_path, monkeypatch):
    """Chunks rendered by 2 spawned workers equal one process's, item for item; and the
    embeddings are the model's, re-normalised (checked against NumPy on the same images)."""
    import keras

    monkeypatch.setattr(cjk_corpus, "CHUNK", 16)  # 50 items: 4 chunks over 2 workers
    (tmp_path / "m").mkdir()
    model = _tiny_model(tmp_path / "m" / "model.keras")
    one = cjk_corpus.build_corpus(50, 5, tmp_path / "c1", model, fonts="small", workers=1)
    two = cjk_corpus.build_corpus(50, 5, tmp_path / "c2", model, fonts="small", workers=2)
    db1, lab1, q1, _, st1 = cjk_corpus.load_corpus(tmp_path / "c1", 5, model)
    db2, lab2, q2, _, st2 = cjk_corpus.load_corpus(tmp_path / "c2", 5, model)
    assert one.name == two.name and st1["rows"] == st2["rows"] == 50 and st2["workers"] == 2
    np.testing.assert_array_equal(np.asarray(db1), np.asarray(db2))
    np.testing.assert_array_equal(lab1, lab2)
    np.testing.assert_array_equal(q1, q2)
    faces, train_ids, _, chars = cjk_corpus.corpus_setup(fonts="small")
    x, y = cjk_corpus.generate_images(
        cjk_corpus.GlyphRenderer(faces, 24), chars, train_ids, 0, 50, seed=0, stream=1
    )
    np.testing.assert_array_equal(lab1, y)
    w, b = keras.saving.load_model(model).get_layer("embedding").get_weights()
    z = x.reshape(50, -1) @ w + b
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(db1), z, atol=1e-5)


def test_models_in_same_named_folders_do_not_share_a_cache(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name / "mrl").mkdir(parents=True)
    a = cjk_corpus.corpus_folder(tmp_path, tmp_path / "a" / "mrl" / "model.keras", 0)
    b = cjk_corpus.corpus_folder(tmp_path, tmp_path / "b" / "mrl" / "model.keras", 0)
    assert a != b and a.name.startswith("cjk_corpus_mrl_") and b.name.startswith("cjk_corpus_mrl_")


def test_a_cache_of_another_model_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    model = _tiny_model(tmp_path / "m" / "model.keras")
    folder = cjk_corpus.corpus_folder(tmp_path / "c", model, 0)
    folder.mkdir(parents=True)
    (folder / "status.json").write_text('{"rows": 3, "model": "/elsewhere/model.keras"}')
    with pytest.raises(SystemExit, match="holds the corpus of model /elsewhere"):
        cjk_corpus.build_corpus(10, 5, tmp_path / "c", model, fonts="small")


def test_bad_worker_count_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="workers >= 1"):
        cjk_corpus.build_corpus(10, 5, tmp_path, workers=0)
