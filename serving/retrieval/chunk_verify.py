"""Verification that scales: per-chunk sha256 of an index's files, written at build time.

`AdaptiveIndex.load(verify=True)` hashes every byte (about 410 GB at 100M x 2048 bfloat16). An
index directory that also holds `chunks.json` (sealed like the manifest, and bound to the
manifest's own sha256) can instead be checked in two steps:

- `check_sizes(index_dir)`: at load, in microseconds: the manifest's self-checksum, that
  `chunks.json` belongs to that manifest, and every file's size;
- `verify_chunks(index_dir)`: later, lazily or on a background thread
  (`start_background_verify`), every chunk's sha256, one chunk (64 MiB) in memory at a time,
  stoppable between chunks. The service's periodic re-verification calls this.

`verify="full"` (the manifest's whole-file hashes, `manifest.verify_index`) stays available.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mrl_keras.serving.retrieval.manifest import (
    MANIFEST_NAME,
    IndexIntegrityError,
    read_manifest,
    seal_manifest,
)

__all__ = [
    "CHUNKS_NAME",
    "CHUNK_BYTES",
    "check_sizes",
    "start_background_verify",
    "verify_chunks",
    "write_chunk_checksums",
]

CHUNKS_NAME = "chunks.json"
CHUNK_BYTES = 64 << 20


def _chunk_hashes(path: Path, chunk_bytes: int) -> list[str]:
    out = []
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            out.append(hashlib.sha256(block).hexdigest())
    return out


def write_chunk_checksums(index_dir: str | Path, chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """Writes `chunks.json` for an index directory (before it is published); returns it."""
    root = Path(index_dir)
    manifest_raw = (root / MANIFEST_NAME).read_bytes()
    manifest = read_manifest(root)
    files = {
        name: {
            "size": (root / name).stat().st_size,
            "chunks": _chunk_hashes(root / name, chunk_bytes),
        }
        for name in sorted(manifest["files"])
    }
    chunks = {
        "format_version": 1,
        "index_manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
        "chunk_bytes": int(chunk_bytes),
        "files": files,
    }
    (root / CHUNKS_NAME).write_bytes(seal_manifest(chunks))
    return chunks


def _read_chunks(root: Path) -> dict[str, Any]:
    path = root / CHUNKS_NAME
    if not path.is_file():
        raise IndexIntegrityError(f"{path}: missing (the index was built without chunk checksums).")
    raw = path.read_bytes()
    try:
        chunks = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexIntegrityError(f"{path}: not valid JSON ({e}).") from e
    if not isinstance(chunks, dict) or seal_manifest(chunks) != raw:
        raise IndexIntegrityError(f"{path}: its checksum does not match its content.")
    manifest_sha = hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()
    if chunks.get("index_manifest_sha256") != manifest_sha:
        raise IndexIntegrityError(
            f"{path}: written for another manifest.json than the one beside it."
        )
    return chunks


def check_sizes(index_dir: str | Path) -> dict[str, Any]:
    """The cheap load-time check; returns the manifest. Raises IndexIntegrityError naming the file."""
    root = Path(index_dir)
    manifest = read_manifest(root)
    chunks = _read_chunks(root)
    for name in sorted(manifest["files"]):
        path = root / name
        if not path.is_file():
            raise IndexIntegrityError(f"{path}: missing.")
        size = path.stat().st_size
        want = chunks["files"].get(name, {}).get("size")
        if size != want:
            raise IndexIntegrityError(
                f"{path}: {size} bytes, expected {want} (truncated or replaced)."
            )
    return manifest


def verify_chunks(index_dir: str | Path, stop: threading.Event | None = None) -> int:
    """Hashes every chunk of every file against `chunks.json`; returns the chunks checked.

    Stops early (returning the count so far) when `stop` is set. Raises IndexIntegrityError
    naming the file and the chunk's byte offset at the first mismatch.
    """
    root = Path(index_dir)
    chunks = _read_chunks(root)
    size, checked = int(chunks["chunk_bytes"]), 0
    for name, entry in sorted(chunks["files"].items()):
        path = root / name
        try:
            f = open(path, "rb")
        except OSError as e:
            raise IndexIntegrityError(f"{path}: unreadable ({e}).") from e
        with f:
            for i, expected in enumerate(entry["chunks"]):
                if stop is not None and stop.is_set():
                    return checked
                if hashlib.sha256(f.read(size)).hexdigest() != expected:
                    raise IndexIntegrityError(
                        f"{path}: checksum mismatch in bytes [{i * size}, {(i + 1) * size}) "
                        "(corrupted on disk). Rebuild or re-copy the index."
                    )
                checked += 1
            if f.read(1):
                raise IndexIntegrityError(f"{path}: longer than when it was built.")
    return checked


def start_background_verify(
    index_dirs: list[str | Path], on_error: Callable[[Exception], None]
) -> tuple[threading.Thread, threading.Event]:
    """Runs `verify_chunks` over `index_dirs` on a daemon thread; calls `on_error(e)` on the first
    problem. Returns (thread, stop event)."""
    stop = threading.Event()

    def run() -> None:
        try:
            for d in index_dirs:
                verify_chunks(d, stop)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            on_error(e)

    thread = threading.Thread(target=run, name="mrl-chunk-verify", daemon=True)
    thread.start()
    return thread, stop
