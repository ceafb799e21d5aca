"""The index manifest (`manifest.json`): file names of the index directory, the sealed
(self-checksummed) manifest, its reader, the file checksums and the model version check.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mrl_keras.serving.retrieval.files import sha256_file

__all__ = [
    "FORMAT_VERSION",
    "IDS_NAME",
    "IndexIntegrityError",
    "MANIFEST_NAME",
    "ModelVersionMismatchError",
    "NORMS_NAME",
    "RERANK_NAME",
    "SCANN_DIR",
    "check_model_version",
    "manifest_bytes",
    "parse_manifest",
    "read_manifest",
    "seal_manifest",
    "verify_index",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SCANN_DIR = "scann"
RERANK_NAME = "rerank.npy"
NORMS_NAME = "prefix_norms.npy"
IDS_NAME = "ids.npy"


class IndexIntegrityError(ValueError):
    """The index directory is incomplete, corrupted or of an unknown format version."""


class ModelVersionMismatchError(ValueError):
    """The index was built by a different model version than the one serving queries."""


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")


def seal_manifest(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    sealed = dict(body, manifest_sha256=hashlib.sha256(manifest_bytes(body)).hexdigest())
    return manifest_bytes(sealed)


def read_manifest(index_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates `manifest.json` (format version and self-checksum) of an index
    folder; a versioned base path reads its newest version's."""
    from mrl_keras.serving.retrieval.index_versions import list_versions

    path = Path(index_dir) / MANIFEST_NAME
    if not path.is_file() and list_versions(index_dir):
        path = Path(index_dir) / str(list_versions(index_dir)[-1]) / MANIFEST_NAME
    if not path.is_file():
        raise IndexIntegrityError(
            f"Not an index directory (no {MANIFEST_NAME}): {str(Path(index_dir))!r}"
        )
    return parse_manifest(path.read_bytes(), path)


def parse_manifest(raw: bytes, path: str | os.PathLike) -> dict[str, Any]:
    """Validates the bytes of a `manifest.json` (read from `path`, named in errors)."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexIntegrityError(f"Corrupted {path}: not valid JSON ({e}).") from e
    if not isinstance(manifest, dict):
        raise IndexIntegrityError(f"Corrupted {path}: expected a JSON object.")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexIntegrityError(
            f"Unsupported index format_version {version!r} in {path}; this mrl-keras reads "
            f"format_version {FORMAT_VERSION}. Rebuild the index with `mrl index build`."
        )
    if seal_manifest(manifest) != raw or "manifest_sha256" not in manifest:
        raise IndexIntegrityError(f"Corrupted {path}: its checksum does not match its content.")
    return manifest


def verify_index(index_dir: str | os.PathLike, manifest: dict[str, Any] | None = None) -> None:
    """Checks the sha256 of every file listed in the manifest; raises IndexIntegrityError."""
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir) if manifest is None else manifest
    for name, expected in sorted(manifest["files"].items()):
        path = index_dir / name
        if not path.is_file():
            raise IndexIntegrityError(f"Index {str(index_dir)!r} is missing {name}.")
        actual = sha256_file(path)
        if actual != expected:
            raise IndexIntegrityError(
                f"Index {str(index_dir)!r}: checksum mismatch for {name} "
                f"(expected sha256 {expected[:12]}..., found {actual[:12]}...). Rebuild the index."
            )


def check_model_version(
    manifest: dict[str, Any], served_version: int | None, *, allow_mismatch: bool = False
) -> None:
    """Refuses an index built by another model version than `served_version`.

    Raises:
        ModelVersionMismatchError: naming both versions, unless `allow_mismatch`.
    """
    built = manifest.get("model_version")
    if allow_mismatch or built is None or served_version is None:
        return
    if int(built) != int(served_version):
        raise ModelVersionMismatchError(
            f"Index was built by model {manifest.get('model_name')!r} version {built}, but the "
            f"backend serves version {served_version}. Rebuild the index with the served model, "
            "pin the backend to the index's version, or pass --allow-version-mismatch."
        )
