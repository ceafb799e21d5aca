"""Smoke tests of benchmarks/store_recall.py (recall values are the benchmark's, not asserted)."""

import re

import pytest

from benchmarks import store_recall


def test_family_members_print_a_recall_per_store(capsys):
    assert (
        store_recall.main(
            ["--no-cjk", "--n", "300", "--d", "16", "--classes", "10", "--queries", "20"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6  # 3 decays x 2 noise levels
    for line in lines:
        values = re.findall(r"(float32|bfloat16|int8) ([0-9.]+)", line)
        assert [k for k, _ in values] == ["float32", "bfloat16", "int8"]
        assert float(values[0][1]) == 1.0  # float32 reranks with the exact values
        assert all(0.0 <= float(v) <= 1.0 for _, v in values)


def test_a_missing_corpus_says_so_and_flags_are_checked(tmp_path, capsys):
    argv = ["--cjk-only", "--cjk-model", str(tmp_path / "nothing" / "model.keras")]
    assert store_recall.main(argv) == 0
    assert "CJK real: not cached here" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        store_recall.main(["--no-cjk", "--cjk-only"])
