"""`LocalModel` specifics (the numbers are in test_conformance_backends.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from serving_testing import MODEL_NAME, sample_inputs

from mrl_keras.serving import FailedPrecondition, InvalidInput, LocalModel
from mrl_keras.serving.backends.local_model import check_inputs, list_versions, resolve_version_dir

X = sample_inputs(3, seed=41)


def test_loads_latest_or_a_version_folder(exported_base_path, local_model):
    assert list_versions(exported_base_path) == [1]
    assert local_model.model_name == MODEL_NAME and local_model.version == 1
    direct = LocalModel(os.path.join(exported_base_path, "1"))
    assert direct.version == 1 and direct.model_name == MODEL_NAME
    np.testing.assert_array_equal(direct.embed(X, 8).embeddings, local_model.embed(X, 8).embeddings)


def test_missing_paths_and_versions(tmp_path, exported_base_path):
    with pytest.raises(FileNotFoundError, match="integer version folders"):
        LocalModel(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"one of the versions \[1\]"):
        resolve_version_dir(exported_base_path, 5)


def test_metadata_includes_matryoshka_json(local_model):
    meta = local_model.metadata()
    assert meta["version"] == 1 and "embed_8" in meta["signatures"]
    assert meta["matryoshka"]["nesting_dims"] == [8, 16, 32]
    assert meta["matryoshka"]["embedding_dim"] == 32


def test_status_and_close(exported_base_path):
    backend = LocalModel(exported_base_path)
    assert (backend.status().version, backend.status().state) == (1, "AVAILABLE")
    backend.close()
    assert backend.status().state == "END"
    with pytest.raises(FailedPrecondition, match="closed"):
        backend.embed(X, 8)


def test_input_errors_use_tf_serving_messages(local_model):
    spec = local_model.signatures()["embed_8"]
    with pytest.raises(InvalidInput, match=r"input size does not match signature: 0!=1"):
        check_inputs(spec, {})
    with pytest.raises(InvalidInput, match="Signature input alias: inputs not found in request"):
        check_inputs(spec, {"x": X})
    with pytest.raises(InvalidInput, match="Expects arg\\[0\\] to be float but double is provided"):
        local_model.run_signature("embed_8", {"inputs": X.astype(np.float64)})
    with pytest.raises(InvalidInput, match=r"expects \[\?,10\], the request has \[3,7\]"):
        local_model.embed(X[:, :7], 8)
    with pytest.raises(FailedPrecondition, match='Serving signature key "nope" not found.'):
        local_model.run_signature("nope", {"inputs": X})
    with pytest.raises(InvalidInput, match="Expected an int dim"):
        local_model.embed(X, 8.0)


def test_required_signatures_present(exported_base_path):
    backend = LocalModel(exported_base_path, required_signatures=["classify_cascade", "embed_16"])
    backend.require("classify_8")
    with pytest.raises(FailedPrecondition, match="classify_64"):
        backend.require("classify_64")
