"""Fixtures for the mrl_keras core tests."""

import gzip
import os

import numpy as np  # noqa: E402
import pytest  # noqa: E402

FASHION_MNIST_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="session")
def fashion_mnist():
    """Returns `(x_train, y_train, x_test, y_test)`: float32 images in [0, 1], int labels."""
    names = {
        "x_train": "train-images-idx3-ubyte.gz",
        "y_train": "train-labels-idx1-ubyte.gz",
        "x_test": "t10k-images-idx3-ubyte.gz",
        "y_test": "t10k-labels-idx1-ubyte.gz",
    }
    paths = {k: os.path.join(FASHION_MNIST_DIR, v) for k, v in names.items()}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        pytest.skip(
            f"Fashion-MNIST IDX files not found ({missing[0]}); "
            "install them with `apt-get install -y dataset-fashion-mnist`."
        )
    arrays = {k: _read_idx(p) for k, p in paths.items()}
    x_train = (arrays["x_train"].astype("float32") / 255.0)[..., None]
    x_test = (arrays["x_test"].astype("float32") / 255.0)[..., None]
    return x_train, arrays["y_train"].astype("int32"), x_test, arrays["y_test"].astype("int32")
