"""Corpus and query readers for the serving CLI: dataset splits, image folders, batched embedding.

Images are scaled to float32 in [0, 1] like the training pipeline (`uint8 / 255`).
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

_IDX_FILES = {
    "fashion_mnist": (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ),
    "mnist": (
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ),
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"Expected a uint8 IDX file. Received: {str(path)!r}")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_dataset_split(
    name: str, split: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`(images uint8 (n, H, W, C), labels int64)` of a dataset split.

    `fashion_mnist` and `mnist` are read offline from IDX files (`data_dir`, else
    `$MRL_DATA_DIR/<name>`, else `/usr/share/datasets/<name with dashes>`); other names go
    through TensorFlow Datasets (`tfds.load(name, split=split)`).
    """
    if split not in ("train", "test") and name in _IDX_FILES:
        raise ValueError(f"Expected split 'train' or 'test' for {name}. Received: {split!r}")
    if name in _IDX_FILES:
        candidates = [data_dir] if data_dir else []
        if os.environ.get("MRL_DATA_DIR"):
            candidates.append(os.path.join(os.environ["MRL_DATA_DIR"], name))
        candidates.append(f"/usr/share/datasets/{name.replace('_', '-')}")
        files = _IDX_FILES[name][:2] if split == "test" else _IDX_FILES[name][2:]
        for directory in candidates:
            paths = [Path(directory) / f for f in files]
            if all(p.is_file() for p in paths):
                images = _read_idx(paths[0])[..., None]
                return images, _read_idx(paths[1]).astype(np.int64)
    from mrl_keras.optional import require

    tfds = require("tensorflow_datasets", f"The dataset {name!r} (not on disk)")
    try:
        images, labels = tfds.as_numpy(
            tfds.load(name, split=split, batch_size=-1, as_supervised=True, data_dir=data_dir)
        )
    except Exception as e:  # noqa: BLE001 - report any TFDS failure as a bad dataset argument
        raise ValueError(
            f"Cannot load dataset {name!r} split {split!r}: {type(e).__name__}: {e}"
        ) from e
    if images.ndim == 3:
        images = images[..., None]
    return images, labels.astype(np.int64)


def to_model_inputs(images: np.ndarray, input_shape: tuple[int, ...] | None) -> np.ndarray:
    """uint8 images -> float32 in [0, 1], shaped like the model's input (channel axis as needed)."""
    x = images.astype(np.float32) / 255.0
    if input_shape is not None and len(input_shape) == x.ndim - 1 and x.shape[-1] == 1:
        x = x[..., 0]
    return x


def load_image_folder(
    directory: str | os.PathLike, input_shape: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """All images under `directory` (sorted), resized to the model's `(H, W, C)`; ids are the
    relative paths."""
    from PIL import Image

    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"Image folder not found: {str(root)!r}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"No images ({', '.join(_IMAGE_SUFFIXES)}) under {str(root)!r}")
    if input_shape is None or len(input_shape) not in (3, 4):
        raise ValueError(
            f"Expected an image model (input (n, H, W[, C])). Received input shape {input_shape}"
        )
    h, w = int(input_shape[1]), int(input_shape[2])
    c = int(input_shape[3]) if len(input_shape) == 4 else 1
    out = np.empty((len(paths), h, w, c), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as img:
            img = img.convert("L" if c == 1 else "RGB").resize((w, h))
            out[i] = np.asarray(img).reshape(h, w, c)
    ids = np.asarray([p.relative_to(root).as_posix() for p in paths])
    return to_model_inputs(out, input_shape), ids


def embed_in_batches(
    backend: Any, inputs: np.ndarray, dim: int, batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """Embeds `inputs` at `dim` through `backend` in batches (with a progress bar on stderr)."""
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1. Received: {batch_size}")
    out = np.empty((len(inputs), dim), np.float32)
    starts = range(0, len(inputs), batch_size)
    if progress:
        from mrl_keras.progress_bar import progress

        starts = progress(starts, desc="embedding", unit="batch", stream=sys.stderr)
    for start in starts:
        out[start : start + batch_size] = backend.embed(
            inputs[start : start + batch_size], dim
        ).embeddings
    return out
