"""Export of Matryoshka models as TF Serving SavedModels with one signature per prefix,
per-prefix classifiers and an in-graph cascade (installed as `mrl_keras.export`).

May import `mrl_keras` and TensorFlow. `mrl_keras.export.metadata` imports only the standard
library, so readers of the metadata need neither; the names below are imported lazily for the
same reason.
"""

from __future__ import annotations

from mrl_keras.export.metadata import read_metadata, validate_metadata
from mrl_keras.lazy import lazy_namespace

__all__ = [
    "ExportedModel",
    "export_saved_model",
    "head_probabilities",
    "read_metadata",
    "read_warmup_requests",
    "validate_metadata",
]

_LAZY = {
    "ExportedModel": "mrl_keras.export.saved_model",
    "export_saved_model": "mrl_keras.export.saved_model",
    "head_probabilities": "mrl_keras.export.model_parts",
    "read_warmup_requests": "mrl_keras.export.warmup",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)
