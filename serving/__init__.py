"""Serving for Matryoshka models: model backends (in-process SavedModel, TF Serving gRPC and
REST), a TF-Serving-compatible development server, the ScaNN adaptive index and retriever, the
cascade classifier client and the HTTP service (installed as `mrl_keras.serving`).

May import TensorFlow, tensorflow-serving-api and ScaNN; reads export's metadata format; never
imports `training`.
"""

from mrl_keras.serving.index import (
    AdaptiveIndex,
    IndexIntegrityError,
    ModelVersionMismatchError,
    build_index,
    default_scann_options,
)
from mrl_keras.serving.retriever import AdaptiveRetriever, SearchResult

__all__ = [
    # index and retriever (issue 6)
    "AdaptiveIndex",
    "AdaptiveRetriever",
    "IndexIntegrityError",
    "ModelVersionMismatchError",
    "SearchResult",
    "build_index",
    "default_scann_options",
]
