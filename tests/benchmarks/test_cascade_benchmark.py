"""`benchmarks/cascade.py`: the over-seeds table, checked against the numbers it is given."""

from benchmarks.cascade import main, table


def _result(acc, full, dim):
    return {"dims": [8, 16, 32], "rows": [{"drop_points": 0.5, "test_accuracy": acc,
            "test_full_dim_accuracy": full, "test_expected_dim": dim}]}  # fmt: skip


def test_table_reports_mean_and_spread_over_runs():
    text = table([_result(0.90, 0.91, 8.0), _result(0.92, 0.92, 16.0)])
    row = text.splitlines()[2]
    assert row.startswith("| 0.5 | 91.00 ± 1.41 | 91.50 ± 0.71 | -0.50 ± 0.71 | 12.00 ± 5.66 |")
    assert row.endswith("| 3.00 ± 1.41 |")  # 32/8 = 4 and 32/16 = 2


def test_bad_drops_are_refused(capsys):
    assert main(["--runs", "x", "--drops", "a,b"]) == 2
    assert "--drops expects comma-separated numbers" in capsys.readouterr().err
