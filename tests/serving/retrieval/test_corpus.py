"""serving/retrieval/corpus.py: IDX splits, image folders, batched embedding."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from mrl_keras.serving.retrieval import corpus


def _write_idx(path, array):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_split_read_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    x, y = corpus.load_dataset_split("fashion_mnist", "test", str(tmp_path))
    np.testing.assert_array_equal(x, images[..., None])
    np.testing.assert_array_equal(y, labels.astype(np.int64))
    assert y.dtype == np.int64


def test_bad_idx_and_split_are_refused(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="Expected a uint8 IDX file"):
        corpus._read_idx(tmp_path / "bad")
    with pytest.raises(ValueError, match="Expected split 'train' or 'test' for fashion_mnist"):
        corpus.load_dataset_split("fashion_mnist", "validation")


def test_to_model_inputs_scales_and_drops_the_channel_for_rank_2_models():
    images = np.array([[[[0], [255]], [[51], [102]]]], np.uint8)
    x = corpus.to_model_inputs(images, (None, 2, 2))
    assert x.shape == (1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], [[0.0, 1.0], [0.2, 0.4]])
    assert corpus.to_model_inputs(images, (None, 2, 2, 1)).shape == (1, 2, 2, 1)


def test_image_folder_is_sorted_resized_and_keyed_by_relative_path(tmp_path):
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "b" / "x.png")
    Image.fromarray(np.zeros((6, 10), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    x, ids = corpus.load_image_folder(tmp_path, (None, 4, 4, 1))
    assert ids.tolist() == ["a.png", "b/x.png"]
    assert x.shape == (2, 4, 4, 1)
    np.testing.assert_allclose(x[0], 0.0)
    np.testing.assert_allclose(x[1], 1.0)
    with pytest.raises(ValueError, match="No images"):
        corpus.load_image_folder(_empty(tmp_path), (None, 4, 4, 1))
    with pytest.raises(ValueError, match="Image folder not found"):
        corpus.load_image_folder(tmp_path / "missing", (None, 4, 4, 1))
    with pytest.raises(ValueError, match="Expected an image model"):
        corpus.load_image_folder(tmp_path, (None, 16))


def _empty(root):
    empty = root / "empty"
    empty.mkdir()
    return empty


def test_embed_in_batches_equals_one_call(local_model):
    from serving_testing import EMBEDDING_DIM, sample_inputs

    x = sample_inputs(23, seed=4)
    batched = corpus.embed_in_batches(local_model, x, EMBEDDING_DIM, batch_size=5, progress=False)
    whole = local_model.embed(x, EMBEDDING_DIM).embeddings
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size >= 1"):
        corpus.embed_in_batches(local_model, x, EMBEDDING_DIM, batch_size=0)
