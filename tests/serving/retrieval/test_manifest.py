"""serving/retrieval/manifest.py: the sealed manifest, its reader and the model version check."""

import json

import pytest

from mrl_keras.serving.retrieval import manifest as M


def _write(tmp_path, manifest):
    (tmp_path / M.MANIFEST_NAME).write_bytes(M.seal_manifest(manifest))


def test_sealed_manifest_round_trip_and_tampering(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"abc")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    _write(tmp_path, {"format_version": M.FORMAT_VERSION, "files": {"data.bin": sha}})
    manifest = M.read_manifest(tmp_path)
    assert manifest["files"] == {"data.bin": sha} and "manifest_sha256" in manifest
    M.verify_index(tmp_path, manifest)
    (tmp_path / "data.bin").write_bytes(b"abd")
    with pytest.raises(M.IndexIntegrityError, match="checksum mismatch for data.bin"):
        M.verify_index(tmp_path, manifest)
    raw = json.loads((tmp_path / M.MANIFEST_NAME).read_text())
    raw["files"] = {}
    (tmp_path / M.MANIFEST_NAME).write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    with pytest.raises(M.IndexIntegrityError, match="checksum does not match"):
        M.read_manifest(tmp_path)


def test_unknown_format_and_missing_manifest(tmp_path):
    with pytest.raises(M.IndexIntegrityError, match="Not an index directory"):
        M.read_manifest(tmp_path)
    _write(tmp_path, {"format_version": M.FORMAT_VERSION + 1})
    with pytest.raises(M.IndexIntegrityError, match="Unsupported index format_version"):
        M.read_manifest(tmp_path)


def test_model_version_check():
    manifest = {"model_name": "m", "model_version": 2}
    M.check_model_version(manifest, 2)
    M.check_model_version(manifest, None)
    M.check_model_version(manifest, 3, allow_mismatch=True)
    with pytest.raises(M.ModelVersionMismatchError, match="built by model 'm' version 2"):
        M.check_model_version(manifest, 3)
