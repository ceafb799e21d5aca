"""Fixtures of the serving-command tests: small corpora, queries and indexes built by `mrl index build`."""

import numpy as np
import pytest
from serving_testing import EMBEDDING_DIM, sample_inputs

from mrl_keras.serving.cli.index_build import main as index_main


@pytest.fixture(scope="module")
def tiny_files(local_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    corpus = sample_inputs(300, seed=41)
    z = local_model.embed(corpus, EMBEDDING_DIM).embeddings
    np.savez(root / "corpus.npz", embeddings=z, ids=np.arange(300) * 10)
    np.save(root / "queries.npy", sample_inputs(3, seed=42))
    np.save(
        root / "query_embeddings.npy",
        local_model.embed(sample_inputs(3, seed=42), EMBEDDING_DIM).embeddings,
    )
    return root


@pytest.fixture(scope="module")
def tiny_index(tiny_files, exported_base_path):
    out = tiny_files / "index"
    argv = [
        "build",
        "--model",
        exported_base_path,
        "--embeddings",
        str(tiny_files / "corpus.npz"),
        "--out",
        str(out),
        "--shortlist-dim",
        "8",
        "--scann",
        "num_leaves=1",
        "--no-progress",
    ]
    assert index_main(argv) == 0
    return out


@pytest.fixture(scope="module")
def tree_files(tmp_path_factory):
    """A 16-leaf index built by `mrl index build` over 2000 random vectors, plus queries."""
    root = tmp_path_factory.mktemp("cli_tree")
    rng = np.random.default_rng(8)
    np.save(root / "corpus.npy", rng.standard_normal((2000, EMBEDDING_DIM)).astype(np.float32))
    np.save(root / "queries.npy", rng.standard_normal((5, EMBEDDING_DIM)).astype(np.float32))
    argv = ["build", "--embeddings", str(root / "corpus.npy"), "--out", str(root / "index")]
    argv += ["--shortlist-dim", "8", "--scann", "num_leaves=16", "--no-progress"]
    assert index_main(argv) == 0
    return root
