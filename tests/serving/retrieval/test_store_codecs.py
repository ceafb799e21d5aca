"""serving/retrieval/store_codecs.py: the bfloat16 codec against an independent rounding."""

import numpy as np
from retrieval_testing import bfloat16_round

from mrl_keras.serving.retrieval.store_codecs import (
    HIGH_HALF,
    STORE_DTYPES,
    STORE_NUMPY_DTYPES,
    from_bfloat16_bits,
    round_to_bfloat16,
    to_bfloat16_bits,
)


def test_round_trip_is_nearest_even_rounding():
    x = np.random.default_rng(0).normal(size=(64, 24)).astype(np.float32) * 5
    x[0, :4] = [1.0 + 2**-8, 1.0 + 3 * 2**-8, -0.0, 0.0]  # ties to even, signed zero
    np.testing.assert_array_equal(from_bfloat16_bits(to_bfloat16_bits(x)), bfloat16_round(x))


def test_in_place_rounding_matches_the_codec():
    x = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    scratch = np.empty(x.shape, np.uint32)
    widened = round_to_bfloat16(x, scratch)
    np.testing.assert_array_equal(widened, from_bfloat16_bits(to_bfloat16_bits(x)))
    np.testing.assert_array_equal(scratch.view(np.uint16)[:, HIGH_HALF::2], to_bfloat16_bits(x))


def test_store_dtypes_on_disk():
    assert STORE_DTYPES == ("float32", "float16", "bfloat16", "int8")
    assert STORE_NUMPY_DTYPES["int8"] == "int8"
    assert STORE_NUMPY_DTYPES["bfloat16"] == "uint16"
