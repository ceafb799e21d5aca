"""Export of Matryoshka models as TF Serving SavedModels with one signature per prefix,
per-prefix classifiers and an in-graph cascade (installed as `mrl_keras.export`).

May import `mrl_keras` and TensorFlow. `mrl_keras.export.metadata` imports only the standard
library, so readers of the metadata need neither; the names below are imported lazily for the
same reason.
"""

from __future__ import annotations

from typing import Any

from mrl_keras.export.metadata import read_metadata, validate_metadata

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mrl_keras.export' has no attribute {name!r}")
