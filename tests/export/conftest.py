"""Fixtures for the export tests: tiny Matryoshka models (Dense backbones on 6x6 images) and
SavedModels exported from them once per session."""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
from export_testing import (  # noqa: E402
    NUM_CLASSES,
    make_model,
    median_thresholds,
    random_inputs,
)

from mrl_keras.export.saved_model import export_saved_model  # noqa: E402


@pytest.fixture(scope="session")
def mrl_model():
    return make_model(efficient=False)


class _Exports:
    """Exports each tiny model once per session, on first use."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.done = {}

    def get(self, efficient):
        if efficient not in self.done:
            model = make_model(efficient=efficient, seed=3 if efficient else 0)
            thresholds = median_thresholds(model, random_inputs(256, seed=7))
            base = self.tmp_path_factory.mktemp("exported") / "tiny_mrl"
            result = export_saved_model(
                model,
                base,
                extra_dims=(24,),
                cascade_thresholds=thresholds,
                bytes_signatures=True,
                class_names=[f"class_{i}" for i in range(NUM_CLASSES)],
            )
            self.done[efficient] = (model, result)
        return self.done[efficient]


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    return _Exports(tmp_path_factory)


@pytest.fixture(scope="session", params=[False, True], ids=["mrl", "mrl_e"])
def exported(request, exports):
    """(model, ExportedModel) for MRL and MRL-E, with extra dims, bytes signatures and
    median thresholds."""
    return exports.get(request.param)


@pytest.fixture(scope="session")
def exported_mrl(exports):
    """The MRL member of `exported`, for the tests that start other processes."""
    return exports.get(False)


@pytest.fixture(scope="session")
def loaded(exported):
    import tensorflow as tf

    return tf.saved_model.load(exported[1].path)
