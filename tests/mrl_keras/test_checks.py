"""mrl_keras/checks.py: `is_int` (the shape checks are tested through the losses and metrics)."""

import numpy as np
import pytest

from mrl_keras.checks import is_int


@pytest.mark.parametrize("value", [0, 3, -2, np.int64(4), np.uint8(1)])
def test_ints(value):
    assert is_int(value)


@pytest.mark.parametrize("value", [True, False, 3.0, "3", None, np.float32(2)])
def test_not_ints(value):
    assert not is_int(value)
