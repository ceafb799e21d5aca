"""Serving for Matryoshka models: model backends (in-process SavedModel, TF Serving gRPC and
REST), a TF-Serving-compatible development server, the ScaNN adaptive index and retriever, the
cascade classifier client and the HTTP service (installed as `mrl_keras.serving`).

May import TensorFlow, tensorflow-serving-api and ScaNN; reads export's metadata format; never
imports `training`.
"""

from mrl_keras.serving._retry import RetryPolicy
from mrl_keras.serving.backend import (
    CascadeResult,
    ClassifyResult,
    EmbedResult,
    ModelBackend,
    ModelInfo,
    ModelStatus,
    SignatureSpec,
    TensorInfo,
    VersionStatus,
)
from mrl_keras.serving.cascade_client import CascadeClassification, CascadeClassifier
from mrl_keras.serving.errors import (
    BackendError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidInput,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from mrl_keras.serving.index import (
    AdaptiveIndex,
    IndexIntegrityError,
    ModelVersionMismatchError,
    build_index,
    default_scann_options,
)
from mrl_keras.serving.local_model import LocalModel
from mrl_keras.serving.model_server import ModelServer
from mrl_keras.serving.retriever import AdaptiveRetriever, SearchResult
from mrl_keras.serving.service import SearchService, ServiceConfig, create_app
from mrl_keras.serving.tf_serving_grpc import TFServingGrpc
from mrl_keras.serving.tf_serving_rest import TFServingRest

__all__ = [
    # model backends, errors and the dev model server (issue 5)
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
    # index and retriever (issue 6)
    "AdaptiveIndex",
    "AdaptiveRetriever",
    "IndexIntegrityError",
    "ModelVersionMismatchError",
    "SearchResult",
    "build_index",
    "default_scann_options",
    # cascade client and HTTP service (issue 6)
    "CascadeClassification",
    "CascadeClassifier",
    "SearchService",
    "ServiceConfig",
    "create_app",
]
