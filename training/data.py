"""Data for training and evaluation: Fashion-MNIST (offline IDX or TFDS), the many-class CJK
benchmark, any TFDS image classification dataset, and the `tf.data` input pipeline.

Every source ends as a `DataSplits`: unbatched `tf.data` datasets of `(image, label)` pairs,
images float32 in [0, 1] of shape `input_shape`, labels int32, and a holdout split carved from
train (for cascade calibration and early stopping).

Over 400 lines because every source (IDX, CJK, TFDS) and the `tf.data` pipeline they share
must agree on one preprocessing; each part is a function a few dozen lines long.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
BUILTIN_DATASETS = ("fashion_mnist", "cjk")
AUGMENTATIONS = ("none", "shift", "shift_flip")


@dataclass
class DataSplits:
    """Train, holdout and test splits of one dataset (unbatched `(image, label)` datasets)."""

    name: str
    train: tf.data.Dataset
    holdout: tf.data.Dataset | None
    test: tf.data.Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    num_train: int
    num_holdout: int
    num_test: int
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a NumPy array.

    Raises:
        ValueError: when the file is not IDX.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"Expected an IDX file (magic 0x0000 + type + ndim). Received: {path}")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtype:
        raise ValueError(f"Unknown IDX element type 0x{data[2]:02x} in {path}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=dtype[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"Truncated IDX file {path}: expected shape {shape}, got {array.size} values"
        )
    return array.reshape(shape)


def load_fashion_mnist(data_dir: str | None = None) -> dict[str, np.ndarray]:
    """Fashion-MNIST as uint8 arrays, offline from the Debian package `dataset-fashion-mnist`
    (IDX files in `data_dir`, default `/usr/share/datasets/fashion-mnist`), else from TFDS.

    Raises:
        ValueError: naming both routes when neither works.
    """
    directory = data_dir or FASHION_MNIST_DIR
    paths = {k: os.path.join(directory, v) for k, v in FASHION_MNIST_FILES.items()}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if not missing:
        return {k: read_idx(p) for k, p in paths.items()}
    try:
        from mrl_keras.optional import require

        tfds = require("tensorflow_datasets", "Fashion-MNIST from TFDS")
        out = {}
        for split in ("train", "test"):
            x, y = tfds.as_numpy(
                tfds.load(
                    "fashion_mnist",
                    split=split,
                    batch_size=-1,
                    as_supervised=True,
                    data_dir=data_dir,
                    download=True,
                )
            )
            out[f"x_{split}"], out[f"y_{split}"] = x[..., 0], y
        return out
    except Exception as e:  # noqa: BLE001 - any TFDS failure means this route is unavailable
        raise ValueError(
            f"Fashion-MNIST is not available. Route 1, offline: the IDX files {missing[0]} "
            f"(and {len(missing) - 1} more) are missing; install them with "
            "`apt-get install dataset-fashion-mnist` or pass --data-dir with the four "
            "*-ubyte.gz files. Route 2, TFDS: `tfds.load('fashion_mnist')` failed "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it needs network "
            "access or a prepared TFDS data dir."
        ) from e


def _split_holdout(x, y, holdout, seed):
    n = len(x)
    n_hold = int(round(holdout * n)) if holdout < 1 else int(holdout)
    if not 0 <= n_hold < n:
        raise ValueError(f"Expected 0 <= holdout < {n} train examples. Received: holdout={holdout}")
    order = np.random.default_rng(seed).permutation(n)
    return x[order[n_hold:]], y[order[n_hold:]], x[order[:n_hold]], y[order[:n_hold]]


def _subset(x, y, limit, seed):
    if limit is None or limit >= len(x):
        return x, y
    order = np.sort(np.random.default_rng(seed + 1).permutation(len(x))[:limit])
    return x[order], y[order]


def _from_arrays(
    name,
    arrays,
    num_classes,
    class_names,
    info,
    holdout,
    seed,
    max_train,
    max_test,
    image_size,
    channels,
):
    x_train, y_train = arrays["x_train"], arrays["y_train"].astype(np.int32)
    x_test, y_test = arrays["x_test"], arrays["y_test"].astype(np.int32)
    x_train, y_train, x_hold, y_hold = _split_holdout(x_train, y_train, holdout, seed)
    x_train, y_train = _subset(x_train, y_train, max_train, seed)
    x_test, y_test = _subset(x_test, y_test, max_test, seed)
    if x_train.ndim == 3:
        x_train, x_hold, x_test = (a[..., None] for a in (x_train, x_hold, x_test))
    shape = tuple(int(s) for s in x_train.shape[1:])
    out_shape = _output_shape(shape, image_size, channels)

    def make(x, y):
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        return ds.map(_preprocess_fn(shape, out_shape), num_parallel_calls=tf.data.AUTOTUNE)

    return DataSplits(
        name=name,
        train=make(x_train, y_train),
        holdout=make(x_hold, y_hold) if len(x_hold) else None,
        test=make(x_test, y_test),
        num_classes=num_classes,
        input_shape=out_shape,
        num_train=len(x_train),
        num_holdout=len(x_hold),
        num_test=len(x_test),
        class_names=class_names,
        info=info,
    )


def _output_shape(shape, image_size, channels):
    h, w, c = shape
    if image_size:
        h = w = int(image_size)
    if channels:
        if channels not in (1, 3) or (c not in (1, channels)):
            raise ValueError(
                f"Expected channels in (1, 3) and convertible from {c}. Received: channels={channels}"
            )
        c = channels
    return (h, w, c)


def _preprocess_fn(in_shape, out_shape):
    def fn(image, label):
        image = tf.cast(image, tf.float32) / 255.0
        if tuple(in_shape[:2]) != tuple(out_shape[:2]):
            image = tf.image.resize(image, out_shape[:2])
        if in_shape[2] != out_shape[2]:
            image = tf.image.grayscale_to_rgb(image)
        return image, tf.cast(label, tf.int32)

    return fn


def _from_tfds(name, data_dir, holdout, seed, max_train, max_test, image_size, channels):
    from mrl_keras.optional import require

    tfds = require("tensorflow_datasets", f"The TFDS dataset {name!r}")

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises several types for unknown names
        raise ValueError(
            f"Unknown dataset {name!r}. Expected one of {', '.join(BUILTIN_DATASETS)} or a TFDS "
            f"dataset name (see `tfds.list_builders()`). ({type(e).__name__})"
        ) from e
    features = builder.info.features
    image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    label_key = next(
        (k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None
    )
    if image_key is None or label_key is None:
        raise ValueError(
            f"Expected TFDS dataset {name!r} to have an Image and a ClassLabel feature. "
            f"Received features: {list(features)}"
        )
    splits = builder.info.splits
    where = data_dir or "~/tensorflow_datasets"
    if not list(splits) and not builder.is_prepared():
        raise ValueError(
            f"TFDS could not download {name!r} (no network?): it is not prepared in {where} and "
            "its split metadata is unknown until it is downloaded. Prepare it on a machine with "
            f"network access (`tfds build {name} --data_dir DIR`) and pass --data-dir DIR."
        )
    test_split = "test" if "test" in splits else "validation" if "validation" in splits else None
    if "train" not in splits or test_split is None:
        raise ValueError(
            f"Expected TFDS dataset {name!r} to have a train and a test/validation split. "
            f"Received splits: {list(splits)}"
        )
    try:
        builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"TFDS could not download or prepare {name!r} in {where} (no network?): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Manual-download "
            "datasets (e.g. imagenet2012) need their archives in <data-dir>/downloads/manual."
        ) from e
    n_train_all = splits["train"].num_examples
    n_hold = int(round(holdout * n_train_all)) if holdout < 1 else int(holdout)
    n_train = n_train_all - n_hold
    if max_train:
        n_train = min(n_train, int(max_train))
    n_test = (
        splits[test_split].num_examples
        if not max_test
        else min(max_test, splits[test_split].num_examples)
    )
    shape = tuple(features[image_key].shape)
    if None in shape[:2] and not image_size:
        raise ValueError(
            f"TFDS dataset {name!r} has images of variable size {shape}; pass --image-size."
        )
    in_shape = (shape[0] or image_size, shape[1] or image_size, shape[2] or 3)
    out_shape = _output_shape(in_shape, image_size, channels)

    def load(split):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        fn = _preprocess_fn(in_shape, out_shape)

        def pick(example):
            image = example[image_key]
            if None in shape[:2]:
                image = tf.image.resize(tf.cast(image, tf.float32), out_shape[:2])
            return fn(image, example[label_key])

        return ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE)

    label = features[label_key]
    return DataSplits(
        name=name,
        train=load(f"train[{n_hold}:{n_hold + n_train}]"),
        holdout=load(f"train[:{n_hold}]") if n_hold else None,
        test=load(f"{test_split}[:{n_test}]"),
        num_classes=label.num_classes,
        input_shape=out_shape,
        num_train=n_train,
        num_holdout=n_hold,
        num_test=n_test,
        class_names=list(label.names) if label.names else None,
        info={"source": "tfds", "test_split": test_split},
    )


def load_data(
    name: str,
    data_dir: str | None = None,
    holdout: float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    cjk: dict[str, Any] | None = None,
) -> DataSplits:
    """Loads a dataset by name into train, holdout and test splits.

    Args:
        name: `"fashion_mnist"` (offline IDX, else TFDS), `"cjk"` (the many-class benchmark,
            see `mrl_keras.training.cjk`) or any TFDS image classification dataset name.
        data_dir: IDX folder for Fashion-MNIST, the TFDS data dir for TFDS datasets, the cache
            folder for `cjk`.
        holdout: float or int. Fraction (< 1) or number of train examples carved out as the
            holdout split, chosen by a seeded permutation. Defaults to 0.1.
        seed: int. Seeds the holdout and subset choices.
        max_train: int. Use at most this many train examples (after the holdout).
        max_test: int. Use at most this many test examples.
        image_size: int. Resize images to this square size.
        channels: int. 3 converts grayscale to RGB.
        cjk: dict. Keyword arguments of `mrl_keras.training.cjk.build_cjk`.

    Returns:
        A `DataSplits`.

    Raises:
        ValueError: unknown dataset, missing files, bad arguments.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Expected a dataset name. Received: {name!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or holdout < 0:
        raise ValueError(
            f"Expected holdout >= 0 (fraction or count). Received: holdout={holdout!r}"
        )
    key = name.lower().replace("-", "_")
    # the split and image options, in the order `_from_arrays` and `_from_tfds` take them
    split = (holdout, seed, max_train, max_test, image_size, channels)
    if key == "fashion_mnist":
        arrays = load_fashion_mnist(data_dir)
        return _from_arrays(
            "fashion_mnist", arrays, 10, FASHION_MNIST_CLASSES, {"source": "idx"}, *split
        )
    if key == "cjk":
        from mrl_keras.training.cjk import build_cjk

        options = dict(cjk or {})
        if data_dir and "cache_dir" not in options:
            options["cache_dir"] = data_dir
        arrays = build_cjk(**options, verbose=True)
        chars = [str(c) for c in arrays["chars"]]
        info = {"source": "cjk", "cjk": options}
        return _from_arrays("cjk", arrays, len(chars), chars, info, *split)
    return _from_tfds(name, data_dir, *split)


def _augment_fn(augment: str, input_shape):
    h, w, _ = input_shape
    pad = max(1, h // 14)

    def fn(image, label):
        if augment in ("shift", "shift_flip"):
            image = tf.image.pad_to_bounding_box(image, pad, pad, h + 2 * pad, w + 2 * pad)
            image = tf.image.random_crop(image, input_shape)
        if augment == "shift_flip":
            image = tf.image.random_flip_left_right(image)
        return image, label

    return fn


def make_pipeline(
    dataset: tf.data.Dataset,
    global_batch_size: int,
    *,
    num_replicas: int = 1,
    shuffle: bool = False,
    shuffle_buffer: int | None = None,
    augment: str = "none",
    input_shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    drop_remainder: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batches an unbatched `(image, label)` dataset for `model.fit` under a strategy.

    The dataset is batched by the *global* batch size; `tf.distribute` splits each batch into
    `global_batch_size / num_replicas` examples per replica (and shards by data across workers).

    Args:
        dataset: unbatched `(image, label)` dataset.
        global_batch_size: int. Examples per step over all replicas.
        num_replicas: int. `strategy.num_replicas_in_sync`; must divide the global batch.
        shuffle: bool. Shuffle with a seeded buffer, reshuffled each epoch.
        shuffle_buffer: int. Default: the whole dataset when its size is known (in-memory
            sources are often sorted by class, so a smaller buffer would bias every batch),
            else 10,000.
        augment: one of `"none"`, `"shift"`, `"shift_flip"`.
        input_shape: the image shape (needed for augmentation).
        seed: int. Shuffle and augmentation seed.
        drop_remainder: bool. Drop the last partial batch (use for training).
        cache: bool. Cache the decoded examples in memory.

    Returns:
        The batched, prefetched dataset.
    """
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"Expected a positive global batch size. Received: {global_batch_size!r}")
    if global_batch_size % num_replicas:
        raise ValueError(
            f"Expected the global batch size to be a multiple of the {num_replicas} replicas. "
            f"Received: global_batch_size={global_batch_size}. Use e.g. "
            f"{(global_batch_size // num_replicas + 1) * num_replicas}."
        )
    if augment not in AUGMENTATIONS:
        raise ValueError(f"Expected augment in {AUGMENTATIONS}. Received: augment={augment!r}")
    ds = dataset.cache() if cache else dataset
    if shuffle:
        if shuffle_buffer is None:
            size = int(dataset.cardinality())
            shuffle_buffer = size if 0 < size <= 1_000_000 else 10_000
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment != "none":
        if input_shape is None:
            raise ValueError("Expected input_shape with augmentation.")
        ds = ds.map(_augment_fn(augment, input_shape), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(global_batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def to_numpy(dataset: tf.data.Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Materialises an unbatched `(image, label)` dataset (or its first `limit` examples)."""
    if limit is not None:
        dataset = dataset.take(limit)
    xs, ys = [], []
    for x, y in dataset.batch(1024).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int32)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int32)
