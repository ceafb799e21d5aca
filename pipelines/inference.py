"""`MatryoshkaEmbedHandler`: a Beam `ModelHandler` over an exported Matryoshka SavedModel.

Beam's own `TFModelHandlerTensor` loads models with `tf.keras.models.load_model` through
tensorflow-hub, which cannot load a Keras 3 `ExportArchive` SavedModel; this handler loads the
pinned version with our `LocalModel` (`tf.saved_model.load`) and calls the `embed_{dim}`
signature once per batch that `RunInference`'s `BatchElements` hands it. Wrap it in Beam's
`KeyedModelHandler` so ids travel with every element.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

__all__ = ["MatryoshkaEmbedHandler"]


class MatryoshkaEmbedHandler(ModelHandler[np.ndarray, PredictionResult, Any]):
    """Embeds batches of model inputs at prefix `dim` with the pinned model version.

    Args:
        model_path: the SavedModel base path (holding integer version folders).
        model_version: int. The version, pinned (every worker loads the same one).
        dim: the embedding prefix written (`D_r`); must be an exported dim.
        min_batch_size, max_batch_size: `BatchElements` bounds.
        share_model: load one model per machine shared by the worker processes
            (`share_model_across_processes`); off by default, since on CPU every worker
            process computing with its own copy is faster than all of them calling one.
    """

    def __init__(
        self,
        model_path: str,
        model_version: int,
        dim: int,
        *,
        min_batch_size: int = 32,
        max_batch_size: int = 256,
        share_model: bool = False,
    ):
        super().__init__()
        self.model_path = str(model_path)
        self.model_version = int(model_version)
        self.dim = int(dim)
        self._batch = {"min_batch_size": int(min_batch_size), "max_batch_size": int(max_batch_size)}
        self._share = bool(share_model)

    def load_model(self) -> Any:
        from mrl_keras.serving.backends.local_model import LocalModel

        return LocalModel(self.model_path, self.model_version)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        inputs = np.stack([np.asarray(x, dtype=np.float32) for x in batch])
        embeddings = model.embed(inputs, self.dim).embeddings
        return [PredictionResult(x, e) for x, e in zip(batch, embeddings, strict=True)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return int(sum(np.asarray(x).nbytes for x in batch))

    def get_metrics_namespace(self) -> str:
        return "mrl_embed"

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def share_model_across_processes(self) -> bool:
        return self._share
