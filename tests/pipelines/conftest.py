"""Fixtures of the Beam pipeline tests: the Fashion-MNIST model of the serving tests
(`tests/serving/fashion_mnist_testing.py`, trained once per session) and its test images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))


@pytest.fixture(scope="session")
def fm_model():
    """(base path of the exported Fashion-MNIST model, LocalModel on it)."""
    import fashion_mnist_testing

    from mrl_keras.serving import LocalModel

    base = fashion_mnist_testing.exported_base_path()
    backend = LocalModel(base)
    yield base, backend
    backend.close()


@pytest.fixture(scope="session")
def fm_images():
    """Fashion-MNIST test images, float32 (n, 28, 28, 1) in [0, 1], and uint8 (n, 28, 28)."""
    import fashion_mnist_testing

    _, _, x_test, _ = fashion_mnist_testing.data()
    return x_test, (x_test[..., 0] * 255).round().astype("uint8")
