"""Quickstart: train a small Matryoshka CNN on Fashion-MNIST and print the accuracy of every prefix.

One model, one training run, and every prefix z[:m] of its 64-dim embedding (m = 8, 16, 32,
64) is a working representation with its own linear classifier:

    python examples/fashion_mnist_quickstart.py            # one epoch, about a minute on 2 cores
    python examples/fashion_mnist_quickstart.py --efficient --epochs 3

Reads the Fashion-MNIST IDX files from /usr/share/datasets/fashion-mnist (Debian package
`dataset-fashion-mnist`) or from --data-dir.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mrl_keras  # noqa: E402

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: str) -> np.ndarray:
    """Reads a gzipped IDX file (the MNIST format: magic, dims, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_dir: str) -> tuple[np.ndarray, ...]:
    """Returns `(x_train, y_train, x_test, y_test)`: images (n, 28, 28, 1) in [0, 1], int labels."""
    arrays = {}
    for key, name in FILES.items():
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} not found. Install the data with `sudo apt-get install -y "
                "dataset-fashion-mnist` or pass --data-dir."
            )
        arrays[key] = read_idx(path)
    x_train = (arrays["x_train"].astype("float32") / 255.0)[..., None]
    x_test = (arrays["x_test"].astype("float32") / 255.0)[..., None]
    return x_train, arrays["y_train"].astype("int32"), x_test, arrays["y_test"].astype("int32")


def build_model(dims: tuple[int, ...], efficient: bool) -> keras.Model:
    """A small CNN -> 64-dim embedding `z` -> MatryoshkaHead with one classifier per prefix."""
    inputs = keras.Input((28, 28, 1), name="inputs")
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    z = keras.layers.Dense(dims[-1], name="embedding")(x)
    logits = mrl_keras.MatryoshkaHead(10, dims, efficient=efficient, name="matryoshka_head")(z)
    return keras.Model(inputs, logits, name="fashion_mnist_mrl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--efficient", action="store_true", help="MRL-E: one shared classifier")
    parser.add_argument("--train-examples", type=int, default=None, help="use a subset")
    parser.add_argument("--save", default=None, help="save the trained model to this .keras file")
    args = parser.parse_args(argv)

    try:
        x_train, y_train, x_test, y_test = load_fashion_mnist(args.data_dir)
        dims = mrl_keras.nesting_dims(args.embedding_dim)
    except (OSError, ValueError, TypeError) as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 2
    if args.train_examples:
        x_train, y_train = x_train[: args.train_examples], y_train[: args.train_examples]

    keras.utils.set_random_seed(0)
    model = build_model(dims, args.efficient)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=mrl_keras.MatryoshkaLoss(),
        metrics=mrl_keras.matryoshka_metrics(dims),
    )
    variant = "MRL-E" if args.efficient else "MRL"
    print(
        f"{variant}: embedding dim {dims[-1]}, nesting dims {list(dims)}, "
        f"{len(x_train)} training images, {args.epochs} epoch(s)"
    )
    start = time.time()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    logs = model.evaluate(x_test, y_test, batch_size=512, verbose=0, return_dict=True)
    print(f"\ntest accuracy per prefix ({len(x_test)} images, {time.time() - start:.0f}s):")
    for m in dims:
        accuracy = logs[f"accuracy@{m}"]
        print(f"  z[:{m:<4}] accuracy@{m:<4} {accuracy:.4f}  {'#' * round(40 * accuracy)}")
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
