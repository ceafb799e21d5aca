"""Embedding shards on disk: what `mrl embed` writes and `mrl index build --embeddings-manifest`
reads (NumPy and the standard library only, so any process can read them).

Layout of an embeddings directory::

    manifest.json                    sealed (self-checksummed, like the index manifest): format,
                                     model name/version, dim, dtype, total count, shard count,
                                     and per shard its file names, count and sha256 of each file
    embeddings-00003-of-00016.npy    (n_i, dim) float32, or uint16 bfloat16 bit patterns
    ids-00003-of-00016.npy           (n_i,) unicode or int64 ids, sorted within the shard

Shard names are a function of (shard number, shard count) only and every shard is written to a
hidden temporary file and renamed into place, so a retried or re-run writer replaces a shard
with the same bytes instead of leaving a duplicate or half a file. The manifest is written last,
after every shard, so a directory without one is an unfinished job.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mrl_keras.serving.retrieval.files import sha256_file
from mrl_keras.serving.retrieval.manifest import seal_manifest
from mrl_keras.serving.retrieval.store_codecs import from_bfloat16_bits, to_bfloat16_bits

__all__ = [
    "EMBEDDINGS_FORMAT",
    "EMBEDDING_DTYPES",
    "EmbeddingShardError",
    "iter_shards",
    "read_embeddings_manifest",
    "shard_file_names",
    "write_embeddings_manifest",
    "write_shard",
]

EMBEDDINGS_FORMAT = "mrl-embeddings"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
EMBEDDING_DTYPES = ("float32", "bfloat16")


class EmbeddingShardError(ValueError):
    """An embeddings directory is incomplete, corrupted or inconsistent (names file + problem)."""


def shard_file_names(shard: int, num_shards: int) -> tuple[str, str]:
    """(embeddings file, ids file) names of shard `shard` of `num_shards` (deterministic)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"Expected 0 <= shard < num_shards. Received: {shard}, {num_shards}")
    tag = f"{shard:05d}-of-{num_shards:05d}"
    return f"embeddings-{tag}.npy", f"ids-{tag}.npy"


def _save_atomic(path: Path, array: np.ndarray) -> str:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha256_file(path)


def write_shard(
    out_dir: str | os.PathLike,
    shard: int,
    num_shards: int,
    ids: Any,
    embeddings: Any,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Writes one shard atomically (rows sorted by id); returns its manifest entry.

    Raises:
        ValueError: mismatched lengths, duplicate ids, non-finite values or an unknown dtype.
    """
    if dtype not in EMBEDDING_DTYPES:
        raise ValueError(f"Expected dtype in {EMBEDDING_DTYPES}. Received: {dtype!r}")
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iuU" or ids.ndim != 1:
        raise ValueError(f"Expected (n,) int or str ids. Received dtype {ids.dtype}, {ids.shape}")
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids
    values = np.asarray(embeddings, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != ids.shape[0]:
        raise ValueError(
            f"Expected embeddings (n={ids.shape[0]}, dim). Received shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"Shard {shard}: embeddings hold NaN or Inf.")
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    if ids.shape[0] > 1 and (ids[1:] == ids[:-1]).any():
        dup = ids[1:][ids[1:] == ids[:-1]][0].item()
        raise ValueError(f"Shard {shard}: duplicate id {dup!r} in the corpus.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    emb_name, ids_name = shard_file_names(shard, num_shards)
    stored = to_bfloat16_bits(values) if dtype == "bfloat16" else values
    return {
        "shard": int(shard),
        "count": int(ids.shape[0]),
        "dim": int(values.shape[1]),
        "embeddings": emb_name,
        "ids": ids_name,
        "sha256": {
            emb_name: _save_atomic(out / emb_name, stored),
            ids_name: _save_atomic(out / ids_name, ids),
        },
    }


def write_embeddings_manifest(
    out_dir: str | os.PathLike,
    shards: list[dict[str, Any]],
    *,
    num_shards: int,
    dtype: str,
    model_name: str | None,
    model_version: int | None,
    source: str = "",
) -> dict[str, Any]:
    """Writes the sealed manifest (last, atomically) over the entries `write_shard` returned.

    Empty shards (no id hashed to them) have no files and no entry. Raises ValueError when two
    entries name the same shard or their dims differ.
    """
    shards = sorted(shards, key=lambda s: s["shard"])
    numbers = [s["shard"] for s in shards]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"Expected one entry per shard. Received shards {numbers}")
    dims = sorted({int(s["dim"]) for s in shards})
    if len(dims) > 1:
        raise ValueError(f"Expected one embedding dim over all shards. Received dims {dims}")
    manifest = {
        "format": EMBEDDINGS_FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_version": None if model_version is None else int(model_version),
        "dim": dims[0] if dims else None,
        "dtype": dtype,
        "count": int(sum(s["count"] for s in shards)),
        "num_shards": int(num_shards),
        "source": source,
        "shards": shards,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(out_dir) / MANIFEST_NAME
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(seal_manifest(manifest))
    os.replace(tmp, path)
    return manifest


def read_embeddings_manifest(
    directory: str | os.PathLike,
    *,
    model_version: int | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Reads and checks an embeddings directory's manifest and its shard files.

    Checks the manifest's own checksum, that every shard file exists with the listed shape
    (array headers only) and, with `verify`, its sha256; one dim over all shards; no id listed
    by two shards (`verify` only: reads every ids file); and, given `model_version`, that the
    embeddings came from that model version.

    Raises:
        EmbeddingShardError: naming the file and the problem.
    """
    root = Path(directory)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise EmbeddingShardError(
            f"{path}: no embeddings manifest (is {str(root)!r} the output of `mrl embed`, and "
            "did the job finish?)"
        )
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EmbeddingShardError(f"{path}: not valid JSON ({e}).") from e
    if not isinstance(manifest, dict) or manifest.get("format") != EMBEDDINGS_FORMAT:
        raise EmbeddingShardError(
            f"{path}: not an embeddings manifest (format != {EMBEDDINGS_FORMAT!r})."
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        raise EmbeddingShardError(
            f"{path}: unsupported format_version {manifest.get('format_version')!r} "
            f"(this mrl-keras reads {FORMAT_VERSION})."
        )
    if "manifest_sha256" not in manifest or seal_manifest(manifest) != raw:
        raise EmbeddingShardError(
            f"{path}: its checksum does not match its content (edited or corrupted)."
        )
    built = manifest.get("model_version")
    if model_version is not None and built is not None and int(built) != int(model_version):
        raise EmbeddingShardError(
            f"{path}: embeddings were made by model {manifest.get('model_name')!r} version "
            f"{built}, but version {model_version} was asked for. Re-run `mrl embed` with that "
            "version (embeddings of two model versions are not comparable)."
        )
    dims: dict[int, str] = {}
    seen: dict[Any, str] = {}
    for entry in manifest["shards"]:
        emb_file, ids_file = root / entry["embeddings"], root / entry["ids"]
        for file in (emb_file, ids_file):
            if not file.is_file():
                raise EmbeddingShardError(f"{file}: shard file listed in {path} is missing.")
        try:
            emb = np.load(emb_file, mmap_mode="r", allow_pickle=False)
            ids = np.load(ids_file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EmbeddingShardError(f"{emb_file}: unreadable shard ({e}).") from e
        if emb.ndim != 2 or emb.shape[0] != entry["count"] or ids.shape != (entry["count"],):
            raise EmbeddingShardError(
                f"{emb_file}: shape {emb.shape} / ids {ids.shape} disagree with the manifest's "
                f"count {entry['count']}."
            )
        dims.setdefault(int(emb.shape[1]), emb_file.name)
        if len(dims) > 1:
            (d0, f0), (d1, f1) = list(dims.items())[:2]
            raise EmbeddingShardError(
                f"{emb_file}: shards of different dims ({f0} has {d0}, {f1} has {d1})."
            )
        if verify:
            for name, expected in entry["sha256"].items():
                if sha256_file(root / name) != expected:
                    raise EmbeddingShardError(
                        f"{root / name}: checksum mismatch (corrupted or replaced)."
                    )
            for i in np.asarray(ids).tolist():
                other = seen.setdefault(i, ids_file.name)
                if other != ids_file.name:
                    raise EmbeddingShardError(
                        f"{ids_file}: duplicate id {i!r} across shards (also in {other})."
                    )
    return manifest


def iter_shards(
    directory: str | os.PathLike, manifest: dict[str, Any]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, float32 embeddings) of each shard in order, one shard in memory at a time."""
    root = Path(directory)
    for entry in manifest["shards"]:
        ids = np.load(root / entry["ids"], allow_pickle=False)
        emb = np.load(root / entry["embeddings"], allow_pickle=False)
        if manifest["dtype"] == "bfloat16":
            emb = from_bfloat16_bits(emb)
        yield ids, np.asarray(emb, dtype=np.float32)
