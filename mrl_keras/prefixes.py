"""Prefix helpers: take the first `m` dims of an embedding and L2-normalise each prefix on its own.

Section 3 of the paper: when embeddings are normalised, the normalisation is "handled
independently for each nesting dimension", i.e. `z[:m] / ||z[:m]||`, not `(z / ||z||)[:m]`.
"""

from __future__ import annotations

from keras import ops

from mrl_keras.checks import is_int
from mrl_keras.nesting import validate_nesting_dims
from mrl_keras.types import NestingDims, Tensor

# Lower bound on the norm, so an all-zero prefix maps to zeros instead of NaN.
_EPSILON = 1e-12


def l2_normalize(x: Tensor, axis: int = -1) -> Tensor:
    """L2-normalises `x` along `axis`; all-zero vectors stay zero.

    Args:
        x: tensor.
        axis: int. The axis to normalise. Defaults to `-1`.

    Returns:
        A tensor of the shape and dtype of `x`.
    """
    x = ops.convert_to_tensor(x)
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, ops.cast(_EPSILON * _EPSILON, x.dtype)))


def _check_prefix(m: int, width: int | None, name: str = "m") -> int:
    if not is_int(m):
        raise TypeError(f"Expected `{name}` to be an int. Received: {name}={m!r}")
    if m < 1:
        raise ValueError(f"Expected `{name}` to be a positive int. Received: {name}={m}")
    if width is not None and m > width:
        raise ValueError(
            f"Expected `{name}` to be at most the embedding width {width}. "
            f"Received: {name}={m} for an input of width {width}"
        )
    return int(m)


def truncate(z: Tensor, m: int, normalize: bool = True) -> Tensor:
    """Returns the prefix `z[..., :m]`, L2-normalised on its own by default.

    Args:
        z: tensor of shape `(..., d)`. The full Matryoshka embedding.
        m: int. The prefix size, `1 <= m <= d`.
        normalize: bool. Whether to L2-normalise the prefix. Defaults to `True`.

    Returns:
        A tensor of shape `(..., m)`.

    Raises:
        TypeError: if `m` is not an int.
        ValueError: if `m < 1` or `m` exceeds the (static) width of `z`.

    Example:

    >>> z = keras.random.normal((4, 64))
    >>> mrl_keras.truncate(z, 16).shape
    (4, 16)
    """
    z = ops.convert_to_tensor(z)
    m = _check_prefix(m, z.shape[-1])
    prefix = z[..., :m]
    return l2_normalize(prefix) if normalize else prefix


def normalize_prefixes(z: Tensor, dims: NestingDims) -> tuple[Tensor, ...]:
    """Returns every prefix `z[..., :m]` for `m` in `dims`, each L2-normalised on its own.

    Args:
        z: tensor of shape `(..., d)`. The full Matryoshka embedding.
        dims: sequence of int. Strictly increasing prefix sizes, each at most `d`.

    Returns:
        A tuple with one tensor of shape `(..., m)` per `m` in `dims`.

    Raises:
        TypeError, ValueError: if `dims` is not a valid nesting set, or its largest dim exceeds
            the (static) width of `z`.

    Example:

    >>> z = keras.random.normal((4, 64))
    >>> [p.shape for p in mrl_keras.normalize_prefixes(z, (8, 16, 64))]
    [(4, 8), (4, 16), (4, 64)]
    """
    z = ops.convert_to_tensor(z)
    dims = validate_nesting_dims(dims, name="dims")
    _check_prefix(dims[-1], z.shape[-1], name="max(dims)")
    return tuple(l2_normalize(z[..., :m]) for m in dims)
