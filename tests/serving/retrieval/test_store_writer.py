"""serving/retrieval/store_writer.py: the store file is the `.npy` NumPy would write, hashed as
written, with the prefix norms of the stored values."""

import hashlib
import io

import numpy as np
import pytest

from mrl_keras.serving.retrieval.store_writer import npy_header, shortlist_prefixes, write_store


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint16"])
def test_npy_header_is_numpys(dtype):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((5, 3), dtype))
    assert buffer.getvalue().startswith(npy_header(np.dtype(dtype), (5, 3)))


def test_float32_store(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)
    digest, norms = write_store(
        tmp_path / "s.npy", x, rerank_dim=8, store_dtype="float32", norm_dims=(4, 8), progress=False
    )
    stored = np.load(tmp_path / "s.npy")
    np.testing.assert_array_equal(stored, x[:, :8])
    assert digest == hashlib.sha256((tmp_path / "s.npy").read_bytes()).hexdigest()
    np.testing.assert_allclose(norms[:, 0], np.linalg.norm(x[:, :4], axis=1), rtol=1e-6)
    np.testing.assert_allclose(norms[:, 1], np.linalg.norm(x[:, :8], axis=1), rtol=1e-6)


def test_non_finite_embeddings_are_refused(tmp_path):
    x = np.ones((4, 6), np.float32)
    x[2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        write_store(
            tmp_path / "s.npy",
            x,
            rerank_dim=6,
            store_dtype="float32",
            norm_dims=(6,),
            progress=False,
        )
    with pytest.raises(ValueError, match="NaN or Inf"):
        shortlist_prefixes(np.where(np.isnan(x), np.inf, x)[:, ::-1].copy(), 2)


def test_shortlist_prefixes_are_renormalised():
    x = np.random.default_rng(1).normal(size=(10, 6)).astype(np.float32)
    got = shortlist_prefixes(x, 3)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
