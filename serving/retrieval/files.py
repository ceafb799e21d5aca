"""Reading the inputs of an index build: embedding files, id files, and the ids' checks; the
sha256 of a file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_embeddings_file", "load_ids_file", "normalize_ids", "sha256_file"]


def load_embeddings_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads full embeddings (and ids) from a `.npy` (memory-mapped) or `.npz` file.

    A `.npz` holds `embeddings` (or a single 2-D array) and optionally `ids`.

    Returns:
        `(embeddings, ids_or_None)`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Embeddings file not found: {str(path)!r}")
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False), None
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "embeddings" in archive:
                embeddings = archive["embeddings"]
            else:
                arrays = [k for k in keys if archive[k].ndim == 2 and k != "ids"]
                if len(arrays) != 1:
                    raise ValueError(
                        f"Expected an 'embeddings' array in {str(path)!r}. Received keys: {keys}"
                    )
                embeddings = archive[arrays[0]]
            ids = archive["ids"] if "ids" in archive else None
        return embeddings, ids
    raise ValueError(f"Expected a .npy or .npz embeddings file. Received: {str(path)!r}")


def load_ids_file(path: str | os.PathLike) -> np.ndarray:
    """Reads ids from `.npy`, or a text file with one id per line (ints if all parse as ints)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Ids file not found: {str(path)!r}")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    try:
        return np.asarray([int(v) for v in lines], dtype=np.int64)
    except ValueError:
        return np.asarray(lines, dtype=str)


def normalize_ids(ids: Any, count: int) -> np.ndarray:
    if ids is None:
        return np.arange(count, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] != count:
        raise ValueError(f"Expected ids of shape ({count},). Received: shape {ids.shape}")
    if ids.dtype.kind in "iu":
        ids = ids.astype(np.int64)
    elif ids.dtype.kind in "US":
        ids = ids.astype(str)
    elif ids.dtype.kind == "O" and all(isinstance(v, str) for v in ids):
        ids = ids.astype(str)
    elif ids.dtype.kind == "O" and all(isinstance(v, (int, np.integer)) for v in ids):
        ids = ids.astype(np.int64)
    else:
        raise TypeError(f"Expected integer or string ids. Received dtype {ids.dtype}")
    if np.unique(ids).shape[0] != count:
        raise ValueError("Expected unique ids. Received duplicates.")
    return ids


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
