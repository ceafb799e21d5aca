"""export/model_parts.py: finding the embedding and the head, and the per-prefix probabilities."""

import numpy as np
import pytest
from export_testing import DIMS, NUM_CLASSES, make_model, random_inputs, softmax

import mrl_keras
from mrl_keras.export.model_parts import find_parts, head_probabilities


def test_find_parts_by_name_and_by_type():
    model = make_model()
    parts = find_parts(model, "embedding", "matryoshka_head")
    assert isinstance(parts.head, mrl_keras.MatryoshkaHead)
    by_type = find_parts(model, None, None)
    assert by_type.head is parts.head
    embedder = find_parts(make_model(head=False), "embedding", None)
    assert embedder.head is None


def test_head_probabilities_are_the_softmax_of_each_prefix():
    model = make_model()
    x = random_inputs(7)
    probs = head_probabilities(model, x, batch_size=3)
    assert probs.shape == (7, len(DIMS), NUM_CLASSES)
    expected = softmax(np.asarray(model(x), np.float64))
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_models_without_a_head_have_no_probabilities():
    with pytest.raises(ValueError, match="MatryoshkaHead"):
        head_probabilities(make_model(head=False), random_inputs(2))
