"""Cascade classification client (paper, section 4.2.1) over any model backend."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class CascadeClassification:
    """Answers of the calibrated cascade for a batch.

    Attributes:
        classes: `(n,)` int64 predicted classes.
        scores: `(n,)` float32 max softmax probability at the prefix that answered.
        dims_used: `(n,)` int32 prefix dimension at which each example stopped.
        class_names: names of the classes when the model's metadata has them, else None.
        model_version: the model version that answered.
    """

    classes: np.ndarray
    scores: np.ndarray
    dims_used: np.ndarray
    class_names: tuple[str, ...] | None
    model_version: int | None

    def predictions(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per example: `class`, `score`, `dims_used` (and `label`)."""
        out = []
        for c, s, m in zip(
            self.classes.tolist(), self.scores.tolist(), self.dims_used.tolist(), strict=True
        ):
            item = {"class": int(c), "score": float(s), "dims_used": int(m)}
            if self.class_names is not None and 0 <= c < len(self.class_names):
                item["label"] = self.class_names[c]
            out.append(item)
        return out


class CascadeClassifier:
    """Classifies with the model's calibrated `classify_cascade` signature.

    Each example stops at the first prefix whose max softmax reaches that prefix's calibrated
    threshold (thresholds are baked into the SavedModel at export), so easy examples use few
    dimensions. Works over `LocalModel`, `TFServingGrpc` and `TFServingRest` alike.

    Args:
        backend: a `ModelBackend` whose model has a `classify_cascade` signature.

    Example:

    >>> client = mrl_keras.serving.CascadeClassifier(LocalModel("models/fm"))  # doctest: +SKIP
    >>> client.classify(images).predictions()[0]                               # doctest: +SKIP
    {'class': 9, 'score': 0.97, 'dims_used': 8}
    """

    def __init__(self, backend: Any):
        if backend is None:
            raise ValueError("Expected a model backend. Received: None")
        self.backend = backend
        self._class_names: tuple[str, ...] | None | bool = False

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Class names from `assets/matryoshka.json` where the backend can read it."""
        if self._class_names is False:
            names = None
            try:
                meta = self.backend.metadata().get("matryoshka") or {}
                if meta.get("class_names"):
                    names = tuple(str(n) for n in meta["class_names"])
            except Exception:  # metadata is a nicety: never fail a classification over it
                names = None
            self._class_names = names
        return self._class_names

    def classify(self, inputs: Any, *, timeout: float | None = None) -> CascadeClassification:
        """Classifies a batch of model inputs with one `classify_cascade` call.

        Raises:
            BackendError: from the backend (e.g. `FailedPrecondition` when the model has no
                cascade, `InvalidInput` for inputs of the wrong shape or dtype).
        """
        result = self.backend.classify_cascade(inputs, timeout=timeout)
        return CascadeClassification(
            classes=np.asarray(result.classes, dtype=np.int64).reshape(-1),
            scores=np.asarray(result.scores, dtype=np.float32).reshape(-1),
            dims_used=np.asarray(result.dims_used, dtype=np.int32).reshape(-1),
            class_names=self.class_names,
            model_version=getattr(result, "served_version", None),
        )
