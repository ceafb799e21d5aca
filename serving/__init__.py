"""Serving for Matryoshka models: model backends (in-process SavedModel, TF Serving gRPC and
REST), a TF-Serving-compatible development server, the ScaNN adaptive index and retriever, the
cascade classifier client and the HTTP service (installed as `mrl_keras.serving`).

May import TensorFlow, tensorflow-serving-api and ScaNN; reads export's metadata format; never
imports `training`. The names below are imported lazily (module `__getattr__`), so
`import mrl_keras.serving` loads none of TensorFlow, Keras, FastAPI or gRPC until a name is used.
"""

from __future__ import annotations

from mrl_keras.lazy import lazy_namespace

__all__ = [
    # model backends, errors and the dev model server
    "BackendError",
    "CascadeResult",
    "ClassifyResult",
    "DeadlineExceeded",
    "EmbedResult",
    "FailedPrecondition",
    "Internal",
    "InvalidInput",
    "LocalModel",
    "ModelBackend",
    "ModelInfo",
    "ModelServer",
    "ModelStatus",
    "NotFound",
    "ResourceExhausted",
    "RetryPolicy",
    "SignatureSpec",
    "TFServingGrpc",
    "TFServingRest",
    "TensorInfo",
    "Unavailable",
    "Unimplemented",
    "VersionStatus",
    # index and retriever
    "AdaptiveIndex",
    "AdaptiveRetriever",
    "IndexIntegrityError",
    "ModelVersionMismatchError",
    "SearchResult",
    "build_index",
    "default_scann_options",
    # cascade client and HTTP service
    "CascadeClassification",
    "CascadeClassifier",
    "SearchService",
    "ServiceConfig",
    "create_app",
]

_BACKEND = "mrl_keras.serving.backends.backend"
_ERRORS = "mrl_keras.serving.backends.errors"
_INDEX = "mrl_keras.serving.retrieval.index"
_LAZY = {
    "RetryPolicy": "mrl_keras.serving.backends.retry",
    **dict.fromkeys(
        [
            "CascadeResult",
            "ClassifyResult",
            "EmbedResult",
            "ModelBackend",
            "ModelInfo",
            "ModelStatus",
            "SignatureSpec",
            "TensorInfo",
            "VersionStatus",
        ],
        _BACKEND,
    ),
    **dict.fromkeys(
        [
            "BackendError",
            "DeadlineExceeded",
            "FailedPrecondition",
            "Internal",
            "InvalidInput",
            "NotFound",
            "ResourceExhausted",
            "Unavailable",
            "Unimplemented",
        ],
        _ERRORS,
    ),
    **dict.fromkeys(
        [
            "AdaptiveIndex",
            "IndexIntegrityError",
            "ModelVersionMismatchError",
            "build_index",
            "default_scann_options",
        ],
        _INDEX,
    ),
    "CascadeClassification": "mrl_keras.serving.backends.cascade_client",
    "CascadeClassifier": "mrl_keras.serving.backends.cascade_client",
    "LocalModel": "mrl_keras.serving.backends.local_model",
    "ModelServer": "mrl_keras.serving.model_server.server",
    "AdaptiveRetriever": "mrl_keras.serving.retrieval.retriever",
    "SearchResult": "mrl_keras.serving.retrieval.retriever",
    "SearchService": "mrl_keras.serving.service.search_service",
    "ServiceConfig": "mrl_keras.serving.service.search_service",
    "create_app": "mrl_keras.serving.service.app",
    "TFServingGrpc": "mrl_keras.serving.backends.tf_serving_grpc",
    "TFServingRest": "mrl_keras.serving.backends.tf_serving_rest",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)
