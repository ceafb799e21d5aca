"""`MatryoshkaHead`: one linear classifier per nesting dim (MRL) or one shared one (MRL-E)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from mrl_keras.checks import is_int
from mrl_keras.nesting import validate_nesting_dims
from mrl_keras.types import NestingDims, Tensor


@keras.saving.register_keras_serializable(package="mrl_keras")
class MatryoshkaHead(keras.layers.Layer):
    """Linear classifiers on the nested prefixes of an embedding.

    For every `m` in `nesting_dims` the head computes logits `z[..., :m] @ W(m) + b(m)` and
    stacks them on a new axis, so one model output carries the predictions of every prefix
    (Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022, section 3).

    - MRL (`efficient=False`): a separate kernel `W(m)` of shape `(m, num_classes)` and bias
      `b(m)` per prefix; `sum(nesting_dims) * num_classes` kernel weights.
    - MRL-E (`efficient=True`): one kernel `W` of shape `(max(nesting_dims), num_classes)`
      and one bias `b`, with `W(m) = W[:m]` and `b(m) = b` (as in the paper's reference code);
      `max(nesting_dims) * num_classes` kernel weights. All prefixes come from a single pass
      over `z`: the partial product of each block of dims `z[..., m_{i-1}:m_i] @ W[m_{i-1}:m_i]`
      is computed once and the logits of every prefix are their cumulative sum.

    The input may be wider than `max(nesting_dims)`; the head reads only that prefix.

    Args:
        num_classes: int. Number of classes `L`, at least 1.
        nesting_dims: sequence of int. Strictly increasing prefix sizes, e.g. from
            `mrl_keras.nesting_dims(d)`.
        efficient: bool. `True` for MRL-E (weight tying). Defaults to `False`.
        use_bias: bool. Whether to add biases. Defaults to `True`.
        kernel_initializer: initializer for the kernels. Defaults to `"glorot_uniform"`.
        bias_initializer: initializer for the biases. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer for the kernels. Defaults to `None`.
        bias_regularizer: optional regularizer for the biases. Defaults to `None`.
        **kwargs: base layer arguments such as `name` and `dtype`.

    Call arguments:
        inputs: tensor of shape `(..., d)` with `d >= max(nesting_dims)`.

    Returns:
        Logits of shape `(..., len(nesting_dims), num_classes)`; `[..., i, :]` are the logits of
        the prefix `nesting_dims[i]`.

    Example:

    ```python
    dims = mrl_keras.nesting_dims(64)                   # (8, 16, 32, 64)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    z = keras.layers.Dense(64, name="embedding")(x)
    logits = mrl_keras.MatryoshkaHead(10, dims, name="matryoshka_head")(z)   # (None, 4, 10)
    model = keras.Model(inputs, logits)
    model.compile(
        "adam",
        loss=mrl_keras.MatryoshkaLoss(),
        metrics=mrl_keras.matryoshka_metrics(dims),
    )
    ```
    """

    def __init__(
        self,
        num_classes: int,
        nesting_dims: NestingDims,
        efficient: bool = False,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not is_int(num_classes):
            raise TypeError(
                "Expected `num_classes` to be an int. "
                f"Received: num_classes={num_classes!r} of type {type(num_classes).__name__}"
            )
        if num_classes < 1:
            raise ValueError(
                f"Expected `num_classes` to be at least 1. Received: num_classes={num_classes}"
            )
        if not isinstance(efficient, bool):
            raise TypeError(f"Expected `efficient` to be a bool. Received: efficient={efficient!r}")
        if not isinstance(use_bias, bool):
            raise TypeError(f"Expected `use_bias` to be a bool. Received: use_bias={use_bias!r}")
        self.num_classes = int(num_classes)
        self.nesting_dims = validate_nesting_dims(nesting_dims)
        self.efficient = efficient
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.input_spec = keras.InputSpec(min_ndim=2)
        self.supports_masking = False

    def _check_input_shape(self, input_shape: Any) -> None:
        input_shape = tuple(input_shape)
        width = input_shape[-1] if input_shape else None
        if len(input_shape) < 2:
            raise ValueError(
                "Expected the input of MatryoshkaHead to have shape (batch, d). "
                f"Received: input_shape={input_shape}"
            )
        if width is None:
            raise ValueError(
                "Expected the last axis of the input of MatryoshkaHead to be defined "
                f"(at least max(nesting_dims)={self.nesting_dims[-1]}). "
                f"Received: input_shape={input_shape}"
            )
        if width < self.nesting_dims[-1]:
            raise ValueError(
                f"Expected an input of width at least max(nesting_dims)={self.nesting_dims[-1]}. "
                f"Received: input_shape={input_shape} with nesting_dims={self.nesting_dims}. "
                "Drop the nesting dims larger than the embedding or widen the embedding."
            )

    def build(self, input_shape: Any) -> None:
        self._check_input_shape(input_shape)
        if self.efficient:
            self.kernel = self.add_weight(
                name="kernel",
                shape=(self.nesting_dims[-1], self.num_classes),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
            self.bias = None
            if self.use_bias:
                self.bias = self.add_weight(
                    name="bias",
                    shape=(self.num_classes,),
                    initializer=self.bias_initializer,
                    regularizer=self.bias_regularizer,
                )
        else:
            self.kernels = []
            self.biases = []
            for m in self.nesting_dims:
                self.kernels.append(
                    self.add_weight(
                        name=f"kernel_{m}",
                        shape=(m, self.num_classes),
                        initializer=self.kernel_initializer,
                        regularizer=self.kernel_regularizer,
                    )
                )
                if self.use_bias:
                    self.biases.append(
                        self.add_weight(
                            name=f"bias_{m}",
                            shape=(self.num_classes,),
                            initializer=self.bias_initializer,
                            regularizer=self.bias_regularizer,
                        )
                    )

    def prefix_weights(self, m: int) -> tuple[Tensor, Tensor | None]:
        """Returns `(W(m), b(m))` of the classifier on the prefix `z[..., :m]`.

        Args:
            m: int. A nesting dim (MRL), or for MRL-E any `1 <= m <= max(nesting_dims)`.

        Returns:
            The kernel of shape `(m, num_classes)` and the bias of shape `(num_classes,)`
            (`None` when `use_bias=False`).
        """
        if not self.built:
            raise ValueError("MatryoshkaHead.prefix_weights() needs a built layer; call it first.")
        if self.efficient:
            if not is_int(m) or not 1 <= m <= self.nesting_dims[-1]:
                raise ValueError(
                    f"Expected an int 1 <= m <= {self.nesting_dims[-1]}. Received: m={m!r}"
                )
            return self.kernel[: int(m)], self.bias
        if m not in self.nesting_dims:
            raise ValueError(
                f"Expected `m` to be one of nesting_dims={self.nesting_dims}. Received: m={m!r}"
            )
        i = self.nesting_dims.index(m)
        return self.kernels[i], (self.biases[i] if self.use_bias else None)

    def prefix_logits(self, inputs: Tensor, m: int) -> Tensor:
        """Returns the logits `inputs[..., :m] @ W(m) + b(m)` of one prefix only.

        Computes a single head, e.g. for a cascade that evaluates the next prefix only for the
        examples the previous one left unresolved.

        Args:
            inputs: tensor of shape `(..., d)`.
            m: int. As in `prefix_weights`.

        Returns:
            Logits of shape `(..., num_classes)`.
        """
        kernel, bias = self.prefix_weights(m)
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        logits = ops.matmul(inputs[..., : int(m)], ops.cast(kernel, inputs.dtype))
        if bias is not None:
            logits = logits + ops.cast(bias, logits.dtype)
        return logits

    def call(self, inputs: Tensor) -> Tensor:
        if self.efficient:
            # One pass over z: block i holds dims [m_{i-1}, m_i); the logits of prefix i are the
            # sum of the partial products of blocks 0..i.
            partials = []
            start = 0
            for m in self.nesting_dims:
                partials.append(ops.matmul(inputs[..., start:m], self.kernel[start:m]))
                start = m
            logits = ops.cumsum(ops.stack(partials, axis=-2), axis=-2)
            if self.use_bias:
                logits = logits + self.bias
            return logits
        outputs = []
        for i, m in enumerate(self.nesting_dims):
            logits = ops.matmul(inputs[..., :m], self.kernels[i])
            if self.use_bias:
                logits = logits + self.biases[i]
            outputs.append(logits)
        return ops.stack(outputs, axis=-2)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        self._check_input_shape(input_shape)
        return (*tuple(input_shape)[:-1], len(self.nesting_dims), self.num_classes)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "nesting_dims": list(self.nesting_dims),
                "efficient": self.efficient,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config
