import threading

import numpy as np
import pytest

from mrl_keras.serving.retrieval.chunk_verify import (
    check_sizes,
    start_background_verify,
    verify_chunks,
    write_chunk_checksums,
)
from mrl_keras.serving.retrieval.index import build_index
from mrl_keras.serving.retrieval.manifest import IndexIntegrityError


@pytest.fixture
def index_dir(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    out = build_index(tmp_path / "idx", x, shortlist_dim=8)
    write_chunk_checksums(out, chunk_bytes=4096)  # small chunks: several per file
    return out


def test_clean_index_passes_every_check(index_dir):
    check_sizes(index_dir)
    rerank_chunks = -(-(index_dir / "rerank.npy").stat().st_size // 4096)
    assert verify_chunks(index_dir) > rerank_chunks > 1


def test_flipped_byte_is_found_with_its_offset(index_dir):
    path = index_dir / "rerank.npy"
    data = bytearray(path.read_bytes())
    data[5000] ^= 0x40
    path.write_bytes(bytes(data))
    check_sizes(index_dir)  # same size: only the chunk hashes can see it
    with pytest.raises(IndexIntegrityError, match=r"rerank.npy: checksum mismatch in bytes \[4096, 8192\)"):
        verify_chunks(index_dir)
    errors = []
    thread, _ = start_background_verify([index_dir], errors.append)
    thread.join(30)
    assert len(errors) == 1 and "rerank.npy" in str(errors[0])


def test_truncated_file_fails_the_size_check(index_dir):
    path = index_dir / "ids.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(IndexIntegrityError, match=r"ids.npy: \d+ bytes, expected \d+"):
        check_sizes(index_dir)


def test_chunks_file_is_bound_to_its_manifest(index_dir, tmp_path):
    other = build_index(tmp_path / "other", np.eye(16, dtype=np.float32), shortlist_dim=8)
    (other / "chunks.json").write_bytes((index_dir / "chunks.json").read_bytes())
    with pytest.raises(IndexIntegrityError, match="written for another manifest.json"):
        check_sizes(other)
    (index_dir / "chunks.json").unlink()
    with pytest.raises(IndexIntegrityError, match="chunks.json: missing"):
        check_sizes(index_dir)


def test_stop_event_ends_verification_early(index_dir):
    stop = threading.Event()
    stop.set()
    assert verify_chunks(index_dir, stop) == 0
