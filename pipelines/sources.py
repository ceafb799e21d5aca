"""Corpus sources of the embedding pipeline: each a `PTransform` giving `(id, model input)`.

- `ImageFiles(pattern)`: an image folder (`DIR`, every image under it) or a glob; the id is the
  path relative to the folder (or the glob's fixed prefix). Files are matched and read by Beam's
  `fileio`, so `gs://`, `s3://` and `hdfs://` patterns work on a cluster.
- `TFRecordImages(pattern, id_key, image_key)`: TFRecord files of `tf.train.Example`s holding an
  encoded image (PNG/JPEG bytes) and an id (bytes or int64).
- `NpyShards(pattern)`: `.npy` files of model inputs `(n, ...)`; ids from a `<name>.ids.npy`
  beside each file when there is one, else `<file stem>:<row>`. Files are memory-mapped and
  read row by row.
- `DatasetSplit(name, split)`: a TFDS dataset (Fashion-MNIST and MNIST read offline from their
  IDX files, like `mrl index build --dataset`); ids `<name>/<split>/<row>`.

Images are decoded, converted to the model's channels, resized to its `(H, W)` and scaled to
float32 in [0, 1] (`uint8 / 255`), one element at a time.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio

__all__ = [
    "DatasetSplit",
    "ImageFiles",
    "NpyShards",
    "TFRecordImages",
    "decode_image",
    "image_to_input",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def decode_image(data: bytes, input_shape: Sequence[int | None]) -> np.ndarray:
    """Encoded image bytes -> float32 model input in [0, 1] shaped like `input_shape[1:]`."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return image_to_input(img, input_shape)


def image_to_input(img: Any, input_shape: Sequence[int | None]) -> np.ndarray:
    """A PIL image -> float32 model input: the model's channels and (H, W), scaled to [0, 1]."""
    if len(input_shape) not in (3, 4):
        raise ValueError(f"Expected an image model (input (n, H, W[, C])). Received {input_shape}")
    h, w = int(input_shape[1]), int(input_shape[2])
    c = int(input_shape[3]) if len(input_shape) == 4 else 1
    img = img.convert("L" if c == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h))
    x = np.asarray(img, dtype=np.float32).reshape(h, w, c) / 255.0
    return x if len(input_shape) == 4 else x[..., 0]


def _glob_root(pattern: str) -> str:
    head = pattern
    while any(ch in head for ch in "*?["):
        head = os.path.dirname(head)
    return head


class ImageFiles(beam.PTransform):
    def __init__(self, pattern: str, input_shape: Sequence[int | None]):
        super().__init__()
        if os.path.isdir(pattern):  # Beam's "**" matches across folders
            self.root, self.pattern = pattern, os.path.join(pattern, "**")
        else:
            self.root, self.pattern = _glob_root(pattern), pattern
        self.input_shape = tuple(input_shape)

    def expand(self, pbegin):
        root, shape = self.root.rstrip("/") + "/", self.input_shape

        def to_element(readable) -> tuple[str, np.ndarray]:
            path = readable.metadata.path
            rel = path[len(root) :] if path.startswith(root) else path
            return rel, decode_image(readable.read(), shape)

        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Images" >> beam.Filter(lambda m: m.path.lower().endswith(IMAGE_SUFFIXES))
            | "Spread" >> beam.Reshuffle()
            | "Read" >> fileio.ReadMatches()
            | "Decode" >> beam.Map(to_element)
        )


def _parse_example(record: bytes, id_key: str, image_key: str) -> tuple[Any, bytes]:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example.FromString(record)
    features = example.features.feature
    for key in (id_key, image_key):
        if key not in features:
            raise ValueError(
                f"TFRecord example has no feature {key!r} (it has {sorted(features)}); "
                "set --id-key / --image-key."
            )
    fid = features[id_key]
    if fid.bytes_list.value:
        ident: Any = fid.bytes_list.value[0].decode("utf-8")
    elif fid.int64_list.value:
        ident = int(fid.int64_list.value[0])
    else:
        raise ValueError(f"TFRecord feature {id_key!r} holds neither bytes nor an int64.")
    if not features[image_key].bytes_list.value:
        raise ValueError(f"TFRecord feature {image_key!r} holds no encoded image bytes.")
    return ident, features[image_key].bytes_list.value[0]


class TFRecordImages(beam.PTransform):
    def __init__(self, pattern: str, input_shape, id_key: str = "id", image_key: str = "image"):
        super().__init__()
        self.pattern, self.input_shape = pattern, tuple(input_shape)
        self.id_key, self.image_key = id_key, image_key

    def expand(self, pbegin):
        shape, id_key, image_key = self.input_shape, self.id_key, self.image_key

        def to_element(record: bytes):
            ident, data = _parse_example(record, id_key, image_key)
            return ident, decode_image(data, shape)

        return (
            pbegin
            | "ReadTFRecord" >> beam.io.ReadFromTFRecord(self.pattern)
            | "Decode" >> beam.Map(to_element)
        )


def _npy_rows(path: str) -> Iterator[tuple[Any, np.ndarray]]:
    x = np.load(path, mmap_mode="r", allow_pickle=False)
    ids_path = path[: -len(".npy")] + ".ids.npy"
    if os.path.isfile(ids_path):
        ids = np.load(ids_path, allow_pickle=False)
        if ids.shape != (x.shape[0],):
            raise ValueError(f"{ids_path}: {ids.shape[0]} ids for {x.shape[0]} rows of {path}.")
        names = ids.tolist()
    else:
        stem = os.path.basename(path)[: -len(".npy")]
        names = [f"{stem}:{i}" for i in range(x.shape[0])]
    for i, ident in enumerate(names):
        yield ident, np.asarray(x[i], dtype=np.float32)


class NpyShards(beam.PTransform):
    def __init__(self, pattern: str):
        super().__init__()
        self.files = sorted(
            f for f in glob.glob(pattern) if f.endswith(".npy") and not f.endswith(".ids.npy")
        )
        if not self.files:
            raise ValueError(f"No .npy files match {pattern!r}.")

    def expand(self, pbegin):
        return (
            pbegin
            | "Files" >> beam.Create(self.files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Rows" >> beam.FlatMap(_npy_rows)
        )


def _tfds_images(name: str, split: str) -> Iterator[np.ndarray]:
    """The split's images one at a time: Fashion-MNIST/MNIST from their IDX files (offline,
    one split in memory: 47 MB), any other name streamed from TFDS."""
    from mrl_keras.serving.retrieval import corpus

    if name in ("fashion_mnist", "mnist"):
        images, _ = corpus.load_dataset_split(name, split)
        yield from images
        return
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split, as_supervised=True)
    except Exception as e:  # noqa: BLE001 - any TFDS failure is a bad source argument
        raise ValueError(f"Cannot load TFDS dataset {name!r} split {split!r}: {e}") from e
    for image, _ in tfds.as_numpy(dataset):
        yield image if image.ndim == 3 else image[..., None]


def _split_rows(spec: tuple[str, str, tuple]) -> Iterator[tuple[str, np.ndarray]]:
    name, split, input_shape = spec
    from PIL import Image

    for i, image in enumerate(_tfds_images(name, split)):
        pixels = image[..., 0] if image.shape[-1] == 1 else image
        yield f"{name}/{split}/{i}", image_to_input(Image.fromarray(pixels), input_shape)


class DatasetSplit(beam.PTransform):
    def __init__(self, name: str, split: str, input_shape):
        super().__init__()
        self.spec = (name, split, tuple(input_shape))

    def expand(self, pbegin):
        return (
            pbegin
            | "Split" >> beam.Create([self.spec])
            | "Rows" >> beam.FlatMap(_split_rows)
            | "Spread" >> beam.Reshuffle()
        )
