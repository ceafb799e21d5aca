"""Smoke tests of benchmarks/rerank_kernel_ab.py (no timing assertions)."""

import numpy as np
import pytest

from benchmarks import rerank_kernel_ab
from mrl_keras.serving import build_index
from mrl_keras.serving.retrieval import rerank_kernel

pytestmark = pytest.mark.skipif(
    not rerank_kernel.available(np.uint16), reason="no C compiler for the rerank kernel"
)


def _index(tmp_path, store_dtype):
    z = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    path = tmp_path / f"index_{store_dtype}"
    build_index(path, z, shortlist_dim=8, store_dtype=store_dtype, model_name="t")
    return path


def test_index_store_is_scored_memory_mapped_against_the_same_kernel(tmp_path, capsys):
    path = _index(tmp_path, "bfloat16")
    assert rerank_kernel_ab.main(["--against", "HEAD", "--index", str(path), "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert f"300 x 16 (32 bytes a row, memory-mapped from {path})" in out
    assert "| HEAD |" in out and "| this checkout |" in out


def test_bad_index_names_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="--index .*missing"):
        rerank_kernel_ab.main(["--against", "HEAD", "--index", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="its store is float32; this benchmark compares bfloat16"):
        rerank_kernel_ab.main(["--against", "HEAD", "--index", str(_index(tmp_path, "float32"))])
