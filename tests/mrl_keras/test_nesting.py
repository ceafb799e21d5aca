import numpy as np
import pytest

import mrl_keras
from mrl_keras import nesting_dims, validate_nesting_dims, validate_nesting_weights


@pytest.mark.parametrize(
    "d, smallest, expected",
    [
        (2048, 8, (8, 16, 32, 64, 128, 256, 512, 1024, 2048)),
        (768, 12, (12, 24, 48, 96, 192, 384, 768)),
        (64, 8, (8, 16, 32, 64)),
        (100, 8, (12, 25, 50, 100)),
        (8, 8, (8,)),
    ],
)
def test_nesting_dims(d, smallest, expected):
    assert nesting_dims(d, smallest=smallest) == expected
    assert all(type(m) is int for m in nesting_dims(d, smallest=smallest))


def test_nesting_dims_is_exported():
    assert mrl_keras.nesting_dims is nesting_dims
    assert "nesting_dims" in mrl_keras.__all__
    assert mrl_keras.__version__


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"d": 4}, ValueError, r"at least `smallest`.*d=4, smallest=8"),
        ({"d": 64, "smallest": 0}, ValueError, r"smallest=0"),
        ({"d": 64.0}, TypeError, r"Expected `d` to be an int.*d=64.0"),
        ({"d": 64, "smallest": 8.5}, TypeError, r"smallest=8.5"),
        ({"d": True}, TypeError, r"d=True"),
    ],
)
def test_nesting_dims_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        nesting_dims(**kwargs)


def test_validate_nesting_dims_accepts_lists_and_numpy():
    assert validate_nesting_dims([8, 16]) == (8, 16)
    assert validate_nesting_dims(np.array([8, 16, 32])) == (8, 16, 32)
    assert all(type(m) is int for m in validate_nesting_dims(np.array([8, 16])))


@pytest.mark.parametrize(
    "dims, error, match",
    [
        ((16, 8), ValueError, r"strictly increasing.*Received: nesting_dims=\(16, 8\)"),
        ((8, 8, 16), ValueError, r"strictly increasing.*duplicate.*\(8, 8, 16\)"),
        ((0, 8), ValueError, r"positive.*\(0, 8\)"),
        ((-8, 16), ValueError, r"positive.*\(-8, 16\)"),
        ((8, 16.5), TypeError, r"only ints.*\(8, 16.5\)"),
        ((8, "16"), TypeError, r"only ints"),
        ((), ValueError, r"at least one dim"),
        (64, TypeError, r"sequence of ints.*nesting_dims=64.*mrl_keras.nesting_dims\(64\)"),
        ("8,16", TypeError, r"sequence of ints"),
    ],
)
def test_validate_nesting_dims_bad_input(dims, error, match):
    with pytest.raises(error, match=match):
        validate_nesting_dims(dims)


def test_validate_nesting_weights():
    assert validate_nesting_weights(None) is None
    assert validate_nesting_weights([1, 0.5], num_dims=2) == (1.0, 0.5)
    assert validate_nesting_weights((0, 2)) == (0.0, 2.0)


@pytest.mark.parametrize(
    "weights, error, match",
    [
        ([1.0, 1.0], ValueError, r"one weight per nesting dim \(3\).*\(1.0, 1.0\) of length 2"),
        ([1.0, -1.0, 1.0], ValueError, r"non-negative.*\(1.0, -1.0, 1.0\)"),
        ([0.0, 0.0, 0.0], ValueError, r"at least one positive"),
        ([1.0, float("nan"), 1.0], ValueError, r"finite"),
        ([1.0, "a", 1.0], TypeError, r"only numbers"),
        (1.0, TypeError, r"sequence of non-negative floats"),
    ],
)
def test_validate_nesting_weights_bad_input(weights, error, match):
    with pytest.raises(error, match=match):
        validate_nesting_weights(weights, num_dims=3)
