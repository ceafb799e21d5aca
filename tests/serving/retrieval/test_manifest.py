"""serving/retrieval/manifest.py: the sealed manifest, its reader and the model version check."""

import json

import pytest

from mrl_keras.serving.retrieval.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    IndexIntegrityError,
    ModelVersionMismatchError,
    check_model_version,
    read_manifest,
    seal_manifest,
    verify_index,
)


def _write(tmp_path, manifest):
    (tmp_path / MANIFEST_NAME).write_bytes(seal_manifest(manifest))


def test_sealed_manifest_round_trip_and_tampering(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"abc")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    _write(tmp_path, {"format_version": FORMAT_VERSION, "files": {"data.bin": sha}})
    manifest = read_manifest(tmp_path)
    assert manifest["files"] == {"data.bin": sha} and "manifest_sha256" in manifest
    verify_index(tmp_path, manifest)
    (tmp_path / "data.bin").write_bytes(b"abd")
    with pytest.raises(IndexIntegrityError, match="checksum mismatch for data.bin"):
        verify_index(tmp_path, manifest)
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    raw["files"] = {}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    with pytest.raises(IndexIntegrityError, match="checksum does not match"):
        read_manifest(tmp_path)


def test_unknown_format_and_missing_manifest(tmp_path):
    with pytest.raises(IndexIntegrityError, match="Not an index directory"):
        read_manifest(tmp_path)
    _write(tmp_path, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(IndexIntegrityError, match="Unsupported index format_version"):
        read_manifest(tmp_path)


def test_model_version_check():
    manifest = {"model_name": "m", "model_version": 2}
    check_model_version(manifest, 2)
    check_model_version(manifest, None)
    check_model_version(manifest, 3, allow_mismatch=True)
    with pytest.raises(ModelVersionMismatchError, match="built by model 'm' version 2"):
        check_model_version(manifest, 3)
