"""serving/retrieval/scann_builder.py: ScaNN settings that scale with the corpus, and their checks."""

import pytest

from mrl_keras.serving.retrieval.scann_builder import default_scann_options, resolve_scann_options


def test_defaults_scale_with_the_corpus():
    small = default_scann_options(10_000, 16)
    assert small["num_leaves"] == 1 and small["dims_per_block"] == 1
    large = default_scann_options(1_000_000, 128)
    assert large["num_leaves"] == 2000 and large["num_leaves_to_search"] == 200
    assert large["dims_per_block"] == 2


def test_overrides_and_derived_settings():
    options = resolve_scann_options(50_000, 16, {"num_leaves": 100})
    assert options["num_leaves_to_search"] == 10  # 10% of the overridden leaves
    big = resolve_scann_options(1_000_000, 16, {"num_leaves": 3000})
    assert big["training_sample_size"] == 300_000  # 100 a leaf, following the overridden leaves
    capped = resolve_scann_options(50, 16, {"num_leaves": 1})
    assert capped["num_neighbors"] == 50 and capped["training_sample_size"] == 50


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"nope": 1}, "Unknown ScaNN option"),
        ({"num_leaves": 0}, "positive int"),
        ({"num_leaves": 10, "num_leaves_to_search": 11}, "num_leaves_to_search <= num_leaves"),
        ({"reorder_dtype": "float64"}, "reorder_dtype"),
        ({"hash_type": "lut8"}, "hash_type"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ValueError, match=match):
        resolve_scann_options(50_000, 16, overrides)
