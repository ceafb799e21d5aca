"""The integrity monitor: recomputes the served index's checksums, names the first file that
differs, marks that pair failed once, and asks for a fallback."""

import os
import stat
import time
from types import SimpleNamespace

from serving_testing import build_tiny_index

from mrl_keras.serving import AdaptiveIndex
from mrl_keras.serving.service.integrity import IntegrityMonitor, first_mismatch


def test_mismatch_is_found_named_and_marked(local_model, tmp_path):
    path = build_tiny_index(local_model, tmp_path / "index", count=60)
    index = AdaptiveIndex.load(path)
    pair = SimpleNamespace(index=index)
    fallbacks = []
    monitor = IntegrityMonitor(lambda: pair, lambda p, n: fallbacks.append(n), interval_s=0)
    assert first_mismatch(index) is None and monitor.check() is None
    target = path / "prefix_norms.npy"
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    with open(target, "r+b") as f:  # in place, as an editor or a bad disk would
        f.write(bytes(data))
    assert first_mismatch(index) == "prefix_norms.npy"
    assert monitor.check() == "prefix_norms.npy" and monitor.check() == "prefix_norms.npy"
    assert monitor.failure(pair) == "prefix_norms.npy" and fallbacks == ["prefix_norms.npy"]  # once
    assert monitor.failure(SimpleNamespace(index=index)) is None  # another pair is fine
    os.remove(target)
    assert first_mismatch(index) == "prefix_norms.npy"  # missing counts as a mismatch


def test_background_checks_run_at_the_interval(local_model, tmp_path):
    path = build_tiny_index(local_model, tmp_path / "index", count=60)
    pair = SimpleNamespace(index=AdaptiveIndex.load(path))
    monitor = IntegrityMonitor(lambda: pair, interval_s=0.02)
    for _ in range(500):  # bounded
        if monitor.checks >= 2:
            break
        time.sleep(0.01)
    monitor.close()
    assert monitor.checks >= 2 and monitor.failure(pair) is None
