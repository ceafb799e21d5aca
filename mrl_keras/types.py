"""Type aliases shared by the public signatures of `mrl_keras`."""

from collections.abc import Sequence
from typing import Any, TypeAlias

Tensor: TypeAlias = Any
"""A backend tensor (or anything `keras.ops.convert_to_tensor` accepts)."""

NestingDims: TypeAlias = Sequence[int]
"""Strictly increasing positive prefix sizes, e.g. `(8, 16, 32, 64)`."""

NestingWeights: TypeAlias = Sequence[float]
"""Non-negative relative importance `c_m` of each prefix, one per nesting dim."""
