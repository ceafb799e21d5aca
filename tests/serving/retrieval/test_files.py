"""serving/retrieval/files.py: the embedding and id files an index is built from."""

import numpy as np
import pytest

from mrl_keras.serving.retrieval.files import (
    load_embeddings_file,
    load_ids_file,
    normalize_ids,
    sha256_file,
)


def test_npy_and_npz_embeddings(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "e.npy", x)
    got, ids = load_embeddings_file(tmp_path / "e.npy")
    np.testing.assert_array_equal(got, x)
    assert ids is None
    np.savez(tmp_path / "e.npz", embeddings=x, ids=np.array([7, 8, 9]))
    got, ids = load_embeddings_file(tmp_path / "e.npz")
    assert ids.tolist() == [7, 8, 9]
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(ValueError, match="Expected an 'embeddings' array"):
        load_embeddings_file(tmp_path / "two.npz")
    with pytest.raises(ValueError, match="not found"):
        load_embeddings_file(tmp_path / "missing.npy")


def test_ids_files(tmp_path):
    (tmp_path / "ints.txt").write_text("3\n1\n2\n")
    assert load_ids_file(tmp_path / "ints.txt").dtype == np.int64
    (tmp_path / "names.txt").write_text("a\nb\n")
    assert load_ids_file(tmp_path / "names.txt").tolist() == ["a", "b"]


def test_normalize_ids():
    assert normalize_ids(None, 3).tolist() == [0, 1, 2]
    assert normalize_ids(np.array(["x", "y"], dtype=object), 2).dtype.kind == "U"
    with pytest.raises(ValueError, match="unique ids"):
        normalize_ids([1, 1], 2)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        normalize_ids([1, 2], 3)
    with pytest.raises(TypeError, match="integer or string ids"):
        normalize_ids([1.5, 2.5], 2)


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
