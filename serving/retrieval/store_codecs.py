"""Rerank store dtypes and the bfloat16 codec (the int8 codec is `store_int8.py`).

NumPy has no bfloat16: the store keeps its bit patterns as uint16, the upper 16 bits of the
float32 rounded to nearest even; widening back is a shift (exact).
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = [
    "HIGH_HALF",
    "STORE_DTYPES",
    "STORE_NUMPY_DTYPES",
    "from_bfloat16_bits",
    "round_to_bfloat16",
    "to_bfloat16_bits",
]

STORE_DTYPES = ("float32", "float16", "bfloat16", "int8")
# On-disk NumPy dtype of each store dtype (NumPy has no bfloat16: its bits are kept as uint16;
# int8 codes come with per-dimension scales, see store_int8.py).
STORE_NUMPY_DTYPES = {
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "uint16",
    "int8": "int8",
}


def to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16): the upper 16 bits, rounded to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((u >> 16) & 1) + np.uint32(0x7FFF)
    return ((u + rounding) >> 16).astype(np.uint16)


# Index of the upper uint16 half within a uint32 viewed as two uint16.
HIGH_HALF = 1 if sys.byteorder == "little" else 0


def round_to_bfloat16(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`from_bfloat16_bits(to_bfloat16_bits(x))` computed in place in `out`, without temporaries.

    Args:
        x: C-contiguous float32 `(n, k)`.
        out: uint32 `(n, k)` scratch; on return it holds the rounded float32 bit patterns, whose
            upper uint16 halves (`out.view(np.uint16)[:, HIGH_HALF::2]`) are the bfloat16 bits.

    Returns:
        `out` viewed as float32: the stored values, widened.
    """
    u = x.view(np.uint32)
    np.right_shift(u, 16, out=out)
    out &= 1
    out += np.uint32(0x7FFF)
    out += u  # same wrap-around as to_bfloat16_bits (only for NaN bit patterns)
    out &= np.uint32(0xFFFF0000)  # == (u + rounding) >> 16 << 16
    return out.view(np.float32)


def from_bfloat16_bits(u: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32 (a shift, exact)."""
    w = np.asarray(u).astype(np.uint32)
    w <<= 16
    return w.view(np.float32)
