"""The model backend interface: one way to call a Matryoshka SavedModel wherever it runs.

`LocalModel` (in-process), `TFServingGrpc` and `TFServingRest` implement it; the retriever and
the cascade client code against `ModelBackend` alone. Implementations supply four primitives
(`_load_signatures`, `_predict`, `status`, `close`); the Matryoshka logic (which signature
serves a dimension, slicing and re-normalising, start-up checks) lives here once.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mrl_keras.retrieval_metrics import l2_normalize
from mrl_keras.serving.backends.errors import FailedPrecondition, InvalidInput

EMBED_OUTPUT = "embedding"
CASCADE_SIGNATURE = "classify_cascade"
_EMBED_RE = re.compile(r"^embed_(\d+)$")
_CLASSIFY_RE = re.compile(r"^classify_(\d+)$")


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: dtype name (`"float32"`) and shape (-1 = any)."""

    dtype: str
    shape: tuple[int, ...] | None


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    """A signature's inputs and outputs, as its SignatureDef declares them."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a served Matryoshka model offers, derived from its signature defs alone.

    Works against a stock TF Serving, which does not expose `assets/matryoshka.json`.
    """

    name: str
    version: int
    embedding_dim: int
    exported_dims: tuple[int, ...]
    num_classes: int | None
    has_cascade: bool
    input_name: str
    input_shape: tuple[int | None, ...] | None  # None: unknown size (the batch), as in Keras
    input_dtype: str
    classify_dims: tuple[int, ...] = ()
    signatures: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class EmbedResult:
    """`embeddings`: float32 `(n, dim)`, L2-normalised; `served_version`: the model version
    that computed them; `source_dim`: the exported prefix they were sliced from."""

    embeddings: np.ndarray
    served_version: int
    source_dim: int


@dataclasses.dataclass(frozen=True)
class ClassifyResult:
    """Outputs of `classify_{dim}`: logits and probabilities `(n, L)`, classes int64, scores."""

    logits: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    served_version: int


@dataclasses.dataclass(frozen=True)
class CascadeResult:
    """Outputs of `classify_cascade`: classes int64, scores float32, dims_used int32."""

    classes: np.ndarray
    scores: np.ndarray
    dims_used: np.ndarray
    served_version: int


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class ModelStatus:
    """The version a backend serves and its state (`"AVAILABLE"`, `"LOADING"`, ...).

    `versions` lists every version the server reports (TF Serving also keeps ended ones).
    """

    version: int
    state: str
    versions: tuple[VersionStatus, ...] = ()

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"


def check_model_spec(version: int | None, label: str | None, timeout: float) -> None:
    """Checks the model spec of a remote backend: at most one of `version` and `label`, and a
    positive default `timeout` (seconds).

    Raises:
        ValueError: naming the bad argument.
    """
    if version is not None and label is not None:
        raise ValueError(
            f"Expected at most one of version and label. Received: version={version}, "
            f"label={label!r}"
        )
    if timeout <= 0:
        raise ValueError(f"Expected timeout > 0. Received: timeout={timeout}")


def info_from_signatures(
    name: str, version: int, signatures: Mapping[str, SignatureSpec]
) -> ModelInfo:
    """Derives `ModelInfo` from a model's signatures (`embed_{m}`, `classify_{m}`, ...).

    Raises:
        FailedPrecondition: the model has no `embed_{m}` signature.
    """
    embed_dims = sorted(int(m.group(1)) for s in signatures if (m := _EMBED_RE.match(s)))
    if not embed_dims:
        raise FailedPrecondition(
            f"Model {name!r} version {version} has no embed_{{m}} signature; found "
            f"{sorted(signatures)}. Export it with mrl_keras.export.export_saved_model "
            "(`mrl export`)."
        )
    classify_dims = sorted(int(m.group(1)) for s in signatures if (m := _CLASSIFY_RE.match(s)))
    top = signatures[f"embed_{embed_dims[-1]}"]
    if len(top.inputs) != 1:
        raise FailedPrecondition(
            f"Expected one input in signature embed_{embed_dims[-1]} of model {name!r}. "
            f"Received: inputs={sorted(top.inputs)}"
        )
    input_name, input_info = next(iter(top.inputs.items()))
    num_classes = None
    if classify_dims:
        logits = signatures[f"classify_{classify_dims[0]}"].outputs.get("logits")
        if logits is not None and logits.shape and logits.shape[-1] > 0:
            num_classes = int(logits.shape[-1])
    return ModelInfo(
        name=name,
        version=int(version),
        embedding_dim=embed_dims[-1],
        exported_dims=tuple(embed_dims),
        num_classes=num_classes,
        has_cascade=CASCADE_SIGNATURE in signatures,
        input_name=input_name,
        input_shape=None
        if input_info.shape is None
        else tuple(None if d < 0 else d for d in input_info.shape),
        input_dtype=input_info.dtype,
        classify_dims=tuple(classify_dims),
        signatures=tuple(sorted(signatures)),
    )


class ModelBackend(abc.ABC):
    """A Matryoshka SavedModel, wherever it runs (in-process, TF Serving gRPC or REST).

    `embed(inputs, dim)` makes one call to the smallest exported `embed_{m}` with `m >= dim`
    and, when `m != dim`, returns the prefix `z[:, :dim]` re-normalised (the prefix of a
    normalised `z[:m]` is not unit-length). Every result carries `served_version`, the
    version that computed it, so callers can check it against their index.

    Subclasses implement `_load_signatures() -> (version, {name: SignatureSpec})`,
    `_predict(signature, inputs, timeout) -> ({output: ndarray}, version)`, `status()` and
    `close()`. Errors are `mrl_keras.serving.backends.errors.BackendError` subclasses.

    Example:

    ```python
    backend = mrl_keras.serving.LocalModel("models/fashion_mnist")
    z = backend.embed(images, 24).embeddings        # (n, 24), from embed_32
    backend.classify_cascade(images).dims_used
    ```
    """

    model_name: str = ""

    def __init__(self, required_signatures: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._signatures: dict[str, SignatureSpec] | None = None
        self._info: ModelInfo | None = None
        self._required = tuple(required_signatures)
        self._stale = False

    # -- primitives -------------------------------------------------------------------
    @abc.abstractmethod
    def _load_signatures(self) -> tuple[int, dict[str, SignatureSpec]]:
        """Subclasses implement this."""

    @abc.abstractmethod
    def _predict(
        self, signature: str, inputs: Mapping[str, np.ndarray], timeout: float | None
    ) -> tuple[dict[str, np.ndarray], int]:
        """Subclasses implement this."""

    @abc.abstractmethod
    def status(self) -> ModelStatus:
        """Subclasses implement this."""

    def close(self) -> None:  # noqa: B027 (optional hook: nothing to release by default)
        """Release connections; the default backend holds none."""

    def pinned(self, version: int) -> ModelBackend:
        """This backend with every call sent to model `version` (TF Serving's
        `ModelSpec.version`, REST `/versions/N`), sharing this one's channel or session.

        The search service pins each (model version, index version) pair this way. The
        default covers the remote backends (they have `version` and `label` attributes);
        `LocalModel` loads that version folder instead. `close()` of a pinned copy leaves the
        shared transport open.

        Raises:
            ValueError: `version` is not a positive int.
        """
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise ValueError(f"Expected a model version >= 1. Received: version={version!r}")
        version = int(version)
        if getattr(self, "version", None) == version and getattr(self, "label", None) is None:
            return self
        clone = copy.copy(self)
        clone._lock = threading.Lock()
        clone._signatures, clone._info, clone._stale = None, None, False
        clone.version, clone.label = version, None
        if hasattr(clone, "_resolved"):
            clone._resolved, clone._resolve_lock = None, threading.Lock()
        clone.close = lambda: None  # the transport stays with the backend it was pinned from
        return clone

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- signatures and info ----------------------------------------------------------
    def refresh(self) -> ModelInfo:
        """Re-reads the signatures from the model (e.g. after a new version) and checks them."""
        version, signatures = self._load_signatures()
        info = info_from_signatures(self.model_name, version, signatures)
        missing = [s for s in self._required if s not in signatures]
        if missing:
            raise FailedPrecondition(
                f"Model {self.model_name!r} version {version} lacks the signatures "
                f"{missing} needed here; it has {sorted(signatures)}. Re-export the model "
                "with them (e.g. a classification head for classify_* signatures)."
            )
        with self._lock:
            self._signatures, self._info, self._stale = signatures, info, False
        return info

    def info(self) -> ModelInfo:
        """`ModelInfo` of the model: read at start-up, and again after a response came from
        another version than the one it describes."""
        if self._info is None or self._stale:
            self.refresh()
        return self._info

    def _served(self, version: int) -> int:
        if self._info is not None and version != self._info.version:
            self._stale = True  # a new version is serving: re-read its signatures next call
        return version

    def signatures(self) -> dict[str, SignatureSpec]:
        self.info()
        return dict(self._signatures)

    def metadata(self) -> dict[str, Any]:
        """The signature map and, where the backend can read it, `assets/matryoshka.json`.

        Returns:
            `{"model_name", "version", "signatures": {name: SignatureSpec},
            "matryoshka": dict | None}` (None over TF Serving, which does not serve assets).
        """
        info = self.info()
        return {
            "model_name": self.model_name,
            "version": info.version,
            "signatures": self.signatures(),
            "matryoshka": self._matryoshka_metadata(),
        }

    def _matryoshka_metadata(self) -> dict[str, Any] | None:
        return None

    def require(self, *signature_names: str) -> None:
        """Raises `FailedPrecondition` unless the model has every named signature."""
        have = self.signatures()
        missing = [s for s in signature_names if s not in have]
        if missing:
            raise FailedPrecondition(
                f"Model {self.model_name!r} lacks the signatures {missing}; it has {sorted(have)}."
            )

    # -- Matryoshka operations --------------------------------------------------------
    def _as_inputs(self, inputs: Any) -> dict[str, np.ndarray]:
        info = self.info()
        if isinstance(inputs, Mapping):
            return {k: np.asarray(v) for k, v in inputs.items()}
        try:
            array = np.asarray(inputs, dtype=np.dtype(info.input_dtype))
        except (TypeError, ValueError) as e:
            raise InvalidInput(
                f"Expected inputs convertible to {info.input_dtype} with shape "
                f"{info.input_shape}. Received: {type(inputs).__name__} ({e})"
            ) from e
        return {info.input_name: array}

    def embed_signature_dim(self, dim: int) -> int:
        """The exported prefix `m` that serves `dim`: the smallest `m >= dim`."""
        info = self.info()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise InvalidInput(f"Expected an int dim. Received: dim={dim!r}")
        dim = int(dim)
        if not 1 <= dim <= info.embedding_dim:
            raise InvalidInput(
                f"Expected 1 <= dim <= {info.embedding_dim} (the model's embedding dim). "
                f"Received: dim={dim}"
            )
        return min(m for m in info.exported_dims if m >= dim)

    def embed(self, inputs: Any, dim: int, *, timeout: float | None = None) -> EmbedResult:
        """Embeds `inputs` with the first `dim` dimensions of `z`, L2-normalised.

        Args:
            inputs: array-like batch of model inputs (or `{input_name: array}`).
            dim: int. Prefix length, `1 <= dim <= embedding_dim`.
            timeout: float seconds for this call (remote backends); default: the backend's.

        Returns:
            `EmbedResult` with float32 `(n, dim)` embeddings and `served_version`.
        """
        m = self.embed_signature_dim(dim)
        outputs, version = self._predict(f"embed_{m}", self._as_inputs(inputs), timeout)
        z = np.asarray(outputs[EMBED_OUTPUT], dtype=np.float32)
        if m != dim:
            z = l2_normalize(z[:, :dim])
        return EmbedResult(embeddings=z, served_version=self._served(version), source_dim=m)

    def classify(self, inputs: Any, dim: int, *, timeout: float | None = None) -> ClassifyResult:
        """Runs the head of prefix `dim` (`classify_{dim}`, which must be exported)."""
        info = self.info()
        if dim not in info.classify_dims:
            raise InvalidInput(
                f"Expected dim to be one of the exported classification prefixes "
                f"{list(info.classify_dims)}. Received: dim={dim!r}"
            )
        outputs, version = self._predict(f"classify_{dim}", self._as_inputs(inputs), timeout)
        return ClassifyResult(
            logits=np.asarray(outputs["logits"], dtype=np.float32),
            probabilities=np.asarray(outputs["probabilities"], dtype=np.float32),
            classes=np.asarray(outputs["classes"], dtype=np.int64),
            scores=np.asarray(outputs["scores"], dtype=np.float32),
            served_version=self._served(version),
        )

    def classify_cascade(self, inputs: Any, *, timeout: float | None = None) -> CascadeResult:
        """Runs the calibrated cascade (`classify_cascade`)."""
        if not self.info().has_cascade:
            raise FailedPrecondition(
                f"Model {self.model_name!r} has no {CASCADE_SIGNATURE} signature; export it "
                "with a classification head (and --calibrate-on for calibrated thresholds)."
            )
        outputs, version = self._predict(CASCADE_SIGNATURE, self._as_inputs(inputs), timeout)
        return CascadeResult(
            classes=np.asarray(outputs["classes"], dtype=np.int64),
            scores=np.asarray(outputs["scores"], dtype=np.float32),
            dims_used=np.asarray(outputs["dims_used"], dtype=np.int32),
            served_version=self._served(version),
        )
