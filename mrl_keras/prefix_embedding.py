"""`PrefixEmbedding`: a layer that keeps the first `dim` features, re-normalised."""

from __future__ import annotations

from typing import Any

import keras

from mrl_keras.prefixes import _check_prefix, truncate
from mrl_keras.types import Tensor


@keras.saving.register_keras_serializable(package="mrl_keras")
class PrefixEmbedding(keras.layers.Layer):
    """Keeps the prefix `z[..., :dim]` of a Matryoshka embedding, L2-normalised on its own.

    The inference-time use of MRL (Kusupati et al., "Matryoshka Representation Learning",
    NeurIPS 2022, section 3: each prefix is normalised independently), as a layer, so that a
    model that serves a smaller embedding saves to `.keras` and exports like any other; the
    counterpart of sentence-transformers' `truncate_dim`. `mrl_keras.truncated_embedder`
    puts one on top of any Keras embedding model.

    Args:
        dim: int. The prefix size, at least 1 and at most the input width.
        normalize: bool. Whether to L2-normalise the prefix. Defaults to `True`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(..., d)` with `d >= dim`.

    Returns:
        A tensor of shape `(..., dim)`.

    Example:

    ```python
    z = keras.random.normal((4, 64))
    mrl_keras.PrefixEmbedding(16)(z).shape   # (4, 16), unit norm
    ```
    """

    def __init__(self, dim: int, normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim = _check_prefix(dim, None, name="dim")
        if not isinstance(normalize, bool):
            raise TypeError(f"Expected `normalize` to be a bool. Received: normalize={normalize!r}")
        self.normalize = normalize

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = input_shape[-1] if input_shape else None
        if width is not None and width < self.dim:
            raise ValueError(
                f"Expected an input of width at least dim={self.dim}. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def call(self, inputs: Tensor) -> Tensor:
        return truncate(inputs, self.dim, normalize=self.normalize)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*tuple(input_shape)[:-1], self.dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"dim": self.dim, "normalize": self.normalize})
        return config
