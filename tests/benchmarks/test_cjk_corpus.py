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
