"""Seeded image corruptions for the robustness evaluation (paper section 5: "as robust as the
original representations"): Gaussian noise, blur, a change of stroke width, occlusion.

NumPy only. Images are float arrays `(n, h, w, c)` in [0, 1] with a light foreground on a dark
background (Fashion-MNIST, the CJK renders); every corruption returns a new array of the same
shape and dtype, clipped to [0, 1], and is a pure function of its arguments and `seed`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CORRUPTIONS = ("noise", "blur", "stroke_thin", "stroke_thick", "occlusion")


def _check(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            "Expected float images of shape (n, height, width, channels). "
            f"Received: shape={x.shape}, dtype={x.dtype}"
        )
    return x


def gaussian_noise(images: np.ndarray, sigma: float = 0.2, seed: int = 0) -> np.ndarray:
    """Adds `N(0, sigma^2)` pixel noise."""
    x = _check(images)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=x.shape)
    return np.clip(x + noise, 0.0, 1.0).astype(x.dtype)


def _window(x: np.ndarray, size: int, reduce: Callable) -> np.ndarray:
    """`reduce` over every `size x size` window (same padding with the edge values)."""
    lo = size // 2
    hi = size - 1 - lo
    padded = np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode="edge")
    h, w = x.shape[1], x.shape[2]
    stack = [padded[:, i : i + h, j : j + w] for i in range(size) for j in range(size)]
    return reduce(np.stack(stack), axis=0)


def blur(images: np.ndarray, size: int = 3, seed: int = 0) -> np.ndarray:
    """A `size x size` box blur (`seed` is unused: the blur is deterministic)."""
    del seed
    x = _check(images)
    return _window(x, size, np.mean).astype(x.dtype)


def stroke_width(images: np.ndarray, change: int = 1, seed: int = 0) -> np.ndarray:
    """Thicker (`change > 0`: grey dilation) or thinner (`change < 0`: grey erosion) strokes,
    by `|change|` pixels (a `2|change|+1` square window)."""
    del seed
    x = _check(images)
    if change == 0:
        return x.copy()
    size = 2 * abs(change) + 1
    return _window(x, size, np.max if change > 0 else np.min).astype(x.dtype)


def occlusion(images: np.ndarray, fraction: float = 0.35, seed: int = 0) -> np.ndarray:
    """Blacks out one square of side `fraction * side` at a seeded random place per image."""
    x = _check(images).copy()
    n, h, w = x.shape[:3]
    sh, sw = max(1, int(round(fraction * h))), max(1, int(round(fraction * w)))
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, h - sh + 1, size=n)
    lefts = rng.integers(0, w - sw + 1, size=n)
    for i in range(n):
        x[i, tops[i] : tops[i] + sh, lefts[i] : lefts[i] + sw] = 0.0
    return x


# The strength parameter each corruption takes after an "@" (e.g. "noise@0.05"), with its range.
STRENGTHS = {
    "noise": ("sigma", 0.0, 1.0),
    "blur": ("window size in pixels", 2, 15),
    "occlusion": ("fraction of the side", 0.0, 1.0),
}


def parse_corruption(name: str) -> tuple[str, float | None]:
    """Splits `"noise@0.05"` into `("noise", 0.05)`; a bare name has strength `None` (default).

    Raises:
        ValueError: an unknown name, a strength for a corruption that takes none, or a strength
            out of its range.
    """
    base, sep, raw = str(name).partition("@")
    if base not in ("clean", *CORRUPTIONS):
        raise ValueError(f"Unknown corruption {name!r}. Expected one of {('clean', *CORRUPTIONS)}.")
    if not sep:
        return base, None
    if base not in STRENGTHS:
        raise ValueError(
            f"Corruption {base!r} takes no strength. Received: {name!r}; strengths exist for "
            f"{sorted(STRENGTHS)} (e.g. 'noise@0.05')."
        )
    what, lo, hi = STRENGTHS[base]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    integer = base == "blur"
    if not (lo < value <= hi if not integer else lo <= value <= hi) or (
        integer and value != int(value)
    ):
        kind = "an integer" if integer else "a number"
        raise ValueError(
            f"Expected {kind} {what} in {'[' if integer else '('}{lo}, {hi}] after '{base}@'. "
            f"Received: {name!r}"
        )
    return base, (int(value) if integer else value)


def corrupt(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """Applies the corruption `name` (one of `CORRUPTIONS`, or `"clean"`) with its default
    strength, or with the strength after an "@" (`"noise@0.05"`, `"blur@2"`,
    `"occlusion@0.2"`; see `STRENGTHS`).

    Raises:
        ValueError: unknown name, bad strength or bad images.
    """
    base, strength = parse_corruption(name)
    functions: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "clean": lambda x: _check(x).copy(),
        "noise": lambda x: gaussian_noise(x, 0.2 if strength is None else strength, seed=seed),
        "blur": lambda x: blur(x, 3 if strength is None else int(strength)),
        "stroke_thin": lambda x: stroke_width(x, -1),
        "stroke_thick": lambda x: stroke_width(x, 1),
        "occlusion": lambda x: occlusion(x, 0.35 if strength is None else strength, seed=seed),
    }
    return functions[base](images)
