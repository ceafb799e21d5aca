"""Tests for serving/cascade_client.py against the tiny exported model and a NumPy cascade."""

import numpy as np
import pytest
from serving_testing import NESTING_DIMS, sample_inputs

from mrl_keras.serving import (
    CascadeClassification,
    CascadeClassifier,
    FailedPrecondition,
    InvalidInput,
)

THRESHOLDS = (0.3, 0.3, 0.0)  # as exported by conftest.export_tiny


def _numpy_cascade(logits):
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    classes, scores, dims = [], [], []
    for p in probs:
        for i, m in enumerate(NESTING_DIMS):
            if p[i].max() >= THRESHOLDS[i] or i == len(NESTING_DIMS) - 1:
                classes.append(int(p[i].argmax()))
                scores.append(float(p[i].max()))
                dims.append(m)
                break
    return np.array(classes), np.array(scores), np.array(dims)


def test_classify_matches_numpy_cascade(local_model, tiny_model):
    x = sample_inputs(64, seed=51)
    result = CascadeClassifier(local_model).classify(x)
    assert isinstance(result, CascadeClassification)
    classes, scores, dims = _numpy_cascade(tiny_model.logits(x))
    np.testing.assert_array_equal(result.classes, classes)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.dims_used, dims)
    assert result.classes.dtype == np.int64 and result.dims_used.dtype == np.int32
    assert result.model_version == 1
    assert set(result.dims_used.tolist()) <= set(NESTING_DIMS)


def test_predictions_are_json_ready(local_model):
    predictions = CascadeClassifier(local_model).classify(sample_inputs(3, seed=52)).predictions()
    assert len(predictions) == 3
    for p in predictions:
        assert set(p) >= {"class", "score", "dims_used"}
        assert (
            isinstance(p["class"], int)
            and isinstance(p["score"], float)
            and isinstance(p["dims_used"], int)
        )


def test_class_names_become_labels():
    result = CascadeClassification(
        classes=np.array([1, 0]),
        scores=np.array([0.9, 0.8], np.float32),
        dims_used=np.array([8, 32], np.int32),
        class_names=("cat", "dog"),
        model_version=3,
    )
    assert result.predictions() == [
        {"class": 1, "score": pytest.approx(0.9), "dims_used": 8, "label": "dog"},
        {"class": 0, "score": pytest.approx(0.8), "dims_used": 32, "label": "cat"},
    ]


def test_errors(local_model):
    with pytest.raises(ValueError, match="backend"):
        CascadeClassifier(None)
    with pytest.raises(InvalidInput):
        CascadeClassifier(local_model).classify(np.zeros((2, 3), np.float32))


def test_model_without_cascade(tmp_path, tiny_model):
    import keras

    from mrl_keras.export import export_saved_model
    from mrl_keras.serving import LocalModel

    embedder = keras.Model(tiny_model.model.inputs, tiny_model.model.get_layer("embedding").output)
    export_saved_model(embedder, str(tmp_path / "emb"), 1, nesting_dims=NESTING_DIMS, warmup=False)
    with pytest.raises(FailedPrecondition, match="classify_cascade"):
        CascadeClassifier(LocalModel(str(tmp_path / "emb"))).classify(sample_inputs(2))
