"""Tests for `mrl_keras.demo.demo_config` and the `mrl demo` flags (no TensorFlow needed)."""

import pytest

from mrl_keras.demo import cli
from mrl_keras.demo.demo_config import DemoConfig, make_config


def test_presets_nest():
    demo = make_config("fashion_mnist")
    quick = make_config("fashion_mnist", quick=True)
    full = make_config("fashion_mnist", full=True)
    assert (demo.mode, quick.mode, full.mode) == ("demo", "demo-quick", "full")
    assert quick.max_train < 10_000 and quick.epochs == 1
    assert demo.max_train is None and not demo.full
    assert full.full and full.eval_max_test >= demo.eval_max_test


def test_cjk_is_a_reproduction_run():
    config = make_config("cjk", quick=True)
    assert config.full and config.dataset == "cjk" and config.mode == "full-quick"


def test_overrides_win_and_none_is_ignored():
    config = make_config("fashion_mnist", quick=True, epochs=3, d=None)
    assert config.epochs == 3 and config.d == make_config("fashion_mnist", quick=True).d


@pytest.mark.parametrize("quick", [False, True])
def test_baselines_train_as_long_as_mrl(quick):
    config = make_config("fashion_mnist", quick=quick, full=True)
    assert config.ff_epochs == config.epochs
    config = make_config("fashion_mnist", quick=quick, full=True, epochs=3)
    assert config.ff_epochs == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dataset": "mnist"}, "Unknown demo dataset"),
        ({"d": 48}, "power of two"),
        ({"d": 64, "shortlist_dim": 64}, "shortlist_dim"),
        ({"epochs": 0}, "positive int epochs"),
    ],
)
def test_invalid_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**kwargs)


def test_cli_bad_input_is_one_line_and_exit_2(capsys):
    assert cli.main(["--d", "48", "--out", "/tmp/never-written"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mrl demo: ") and "power of two" in err[0]
    with pytest.raises(SystemExit) as e:
        cli.main(["--dataset", "nope"])
    assert e.value.code == 2


def test_cli_render_missing_report(tmp_path, capsys):
    assert cli.main(["--render", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err
