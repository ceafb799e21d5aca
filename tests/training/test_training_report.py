"""training/report.py: markdown tables and the files `write_report` writes."""

import json

from mrl_keras.training import report


def _result():
    rows = [
        {"method": m, "dim": d, "1nn_top1": v, "head_top1": v + 0.01, "flops_per_query": 100.0 * d}
        for m, d, v in (
            ("FF", 8, 0.5),
            ("MRL", 8, 0.6),
            ("MRL", 16, 0.7),
            ("SVD", 8, 0.4),
            ("MRL-E", 16, 0.65),
        )
    ]
    robustness = [
        {"method": "MRL", "dim": 8, "corruption": "noise", "1nn_top1": 0.55},
        {"method": "FF", "dim": 8, "corruption": "noise", "1nn_top1": 0.45},
    ]
    few_shot = [{"method": "MRL", "dim": 8, "shots": 5, "1nn_top1": 0.3}]
    return {
        "dataset": "toy",
        "num_train": 10,
        "num_test": 5,
        "num_classes": 2,
        "ks": [10],
        "rows": rows,
        "robustness": robustness,
        "few_shot": few_shot,
    }


def test_pivot_table_orders_methods_and_formats_percent():
    table = report.pivot_table(_result(), "1nn_top1").splitlines()
    assert table[0] == "| dim | MRL | MRL-E | FF | SVD |"
    assert table[2] == "| 8 | 60.00 | - | 50.00 | 40.00 |"
    assert table[3] == "| 16 | 70.00 | 65.00 | - | - |"


def test_markdown_has_robustness_and_few_shot_sections():
    text = report.markdown(_result())
    assert "1-NN top-1, queries corrupted by `noise`:" in text
    assert "1-NN top-1, 5-shot on novel classes:" in text
    assert "| MRL | 16 | 71.00 | - | 70.00 |" in text  # full table: head, LP, 1-NN


def test_write_report_writes_json_markdown_and_plots(tmp_path):
    report.write_report(_result(), str(tmp_path))
    assert json.loads((tmp_path / "evaluation.json").read_text())["dataset"] == "toy"
    assert (tmp_path / "evaluation.md").read_text() == report.markdown(_result())
    for name in ("plot_1nn.png", "plot_robustness_noise.png", "plot_few_shot_5.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "plot_linear_probe.png").exists()


def test_without_matplotlib_the_tables_are_written_and_the_plots_skipped(
    tmp_path, monkeypatch, capsys
):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as in a core-only install
    report.write_report(_result(), str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.json", "evaluation.md"]
    assert "pip install 'mrl-keras[plots]'" in capsys.readouterr().err
