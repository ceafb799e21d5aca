"""Shared test helpers (after keras-hub's `src/tests/test_case.py`).

Use the functions directly, or subclass `TestCase` in a pytest test class:

```python
from tests.testing import TestCase, run_serialization_test

class TestMyLayer(TestCase):
    def test_serialization(self):
        self.run_serialization_test(MyLayer(4))
```
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np


def _normalize_config(config: Any) -> Any:
    # A JSON round trip turns tuples into lists; compare configs in their JSON form.
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def run_serialization_test(instance: Any) -> Any:
    """Checks that `instance.get_config()` round trips through JSON and `from_config`.

    Works for layers, losses, metrics and anything else with `get_config`/`from_config`, and for
    `keras.saving.serialize_keras_object` (so registration under its package is checked too).

    Args:
        instance: the object to check.

    Returns:
        The object rebuilt from the JSON config.
    """
    cls = type(instance)
    config = instance.get_config()
    json_config = json.dumps(config)  # Fails on anything JSON cannot hold (bound methods, ...).
    revived = cls.from_config(json.loads(json_config))
    assert _normalize_config(revived.get_config()) == _normalize_config(config)

    serialized = keras.saving.serialize_keras_object(instance)
    revived_generic = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(revived_generic) is cls, (type(revived_generic), cls)
    assert _normalize_config(revived_generic.get_config()) == _normalize_config(config)
    return revived


def run_model_saving_test(
    model: keras.Model,
    input_data: Any,
    tmp_path: str | os.PathLike[str],
    atol: float = 0.0,
    rtol: float = 0.0,
) -> keras.Model:
    """Saves `model` to `.keras`, reloads it, and checks that the outputs are identical.

    Args:
        model: a built model.
        input_data: inputs for `model(...)`.
        tmp_path: a directory to write `model.keras` into.
        atol, rtol: tolerances for the comparison. Default to exact equality.

    Returns:
        The reloaded model.
    """
    path = os.path.join(os.fspath(tmp_path), "model.keras")
    expected = keras.tree.map_structure(keras.ops.convert_to_numpy, model(input_data))
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = keras.tree.map_structure(keras.ops.convert_to_numpy, restored(input_data))
    keras.tree.map_structure(
        lambda e, a: np.testing.assert_allclose(a, e, atol=atol, rtol=rtol), expected, actual
    )
    return restored


class TestCase:
    """Base for pytest test classes: the shared helpers as methods."""

    def run_serialization_test(self, instance: Any) -> Any:
        return run_serialization_test(instance)

    def run_model_saving_test(self, model, input_data, tmp_path, atol=0.0, rtol=0.0):
        return run_model_saving_test(model, input_data, tmp_path, atol=atol, rtol=rtol)
