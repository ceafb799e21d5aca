"""`benchmarks/representation_seeds.py`: means and spreads over seeds, checked with statistics."""

import json
import statistics

from benchmarks.representation_seeds import main, report


def _evaluation(tmp_path, name, mrl, ff):
    rows = [
        {"method": "MRL", "dim": 8, "1nn_top1": mrl},
        {"method": "FF", "dim": 8, "1nn_top1": ff},
    ]
    result = {"dataset": "cjk", "num_classes": 3, "num_train": 9, "num_test": 4, "rows": rows,
              "robustness": [{"method": "MRL", "dim": 8, "corruption": "blur", "1nn_top1": mrl / 2}],
              "few_shot": [{"method": "FF", "dim": 8, "shots": 5, "1nn_top1": ff / 2}]}  # fmt: skip
    path = tmp_path / name
    path.mkdir()
    (path / "evaluation.json").write_text(json.dumps(result))
    return str(path)


def test_report_gives_mean_and_spread_over_seeds(tmp_path):
    runs = [_evaluation(tmp_path, f"s{i}", m, f)
            for i, (m, f) in enumerate([(0.80, 0.78), (0.84, 0.79), (0.83, 0.83)])]  # fmt: skip
    text, _ = report(runs)
    mean, sd = statistics.mean([80, 84, 83]), statistics.stdev([80, 84, 83])
    assert f"| 8 | {mean:.1f} ± {sd:.1f} |" in text
    gap = [2.0, 5.0, 0.0]
    assert f"| 8 | {statistics.mean(gap):+.2f} | +0.00 | +5.00 |" in text
    assert "corrupted by `blur`" in text and "5-shot on novel classes" in text


def test_unreadable_input_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "cannot read the evaluations" in capsys.readouterr().err


def test_plots_carry_the_mean_and_the_spread(tmp_path):
    from benchmarks.representation_seeds import _collect, _load, _series, write_plots

    runs = [_evaluation(tmp_path, f"s{i}", m, f)
            for i, (m, f) in enumerate([(0.80, 0.78), (0.84, 0.79), (0.83, 0.83)])]  # fmt: skip
    series = _series(_collect([_load(r) for r in runs], "rows", None), "1nn_top1", None)
    (dim, mean, sd) = series["MRL"][0]
    assert dim == 8 and abs(mean - statistics.mean([80, 84, 83])) < 1e-9
    assert abs(sd - statistics.stdev([80, 84, 83])) < 1e-9
    files = write_plots(runs, str(tmp_path / "img"), "t")
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "t_clean.png", "t_robustness_blur.png", "t_few_shot_5.png"]  # fmt: skip
    assert all(open(f, "rb").read(4) == b"\x89PNG" for f in files)
