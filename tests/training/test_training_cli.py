import pytest

from mrl_keras.training.cli import evaluate_main, train_main


def test_train_unknown_dataset_is_one_line(tmp_path, capsys):
    rc = train_main(["--dataset", "no_such_dataset_xyz", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "Unknown dataset 'no_such_dataset_xyz'" in err
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


def test_train_bad_flags_and_shape(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(["--mode", "slimmable"])
    assert e.value.code == 2
    rc = train_main(
        [
            "--backbone",
            "resnet50",
            "--out",
            str(tmp_path / "r"),
            "--max-train",
            "8",
            "--max-test",
            "8",
            "--holdout",
            "4",
        ]
    )
    assert rc == 2 and "at least 32x32" in capsys.readouterr().err


def test_evaluate_missing_model(tmp_path, capsys):
    assert evaluate_main(["--model", str(tmp_path / "missing")]) == 2
    assert "Model not found" in capsys.readouterr().err
    assert evaluate_main(["--model", "x", "--baselines", "pca"]) == 2


def test_evaluate_bad_robustness_strength_is_one_line(capsys):
    assert evaluate_main(["--model", "x", "--robustness", "clean,noise@7"]) == 2
    err = capsys.readouterr().err
    assert "--robustness: Expected a number sigma in (0.0, 1.0] after 'noise@'" in err
    assert "Traceback" not in err


def test_help(capsys):
    for main in (train_main, evaluate_main):
        with pytest.raises(SystemExit) as e:
            main(["--help"])
        assert e.value.code == 0
    assert "--all-dims" in capsys.readouterr().out


@pytest.mark.parametrize(
    "old, new",
    [
        (["--dims", "8,16"], ["--nesting-dims", "8,16"]),
        (["--verbose", "2"], ["--fit-verbosity", "2"]),
    ],
)
def test_train_old_flag_names_are_hidden_aliases(old, new, capsys):
    from mrl_keras.training.cli import train_parser

    parser = train_parser()
    assert vars(parser.parse_args(old)) == vars(parser.parse_args(new))
    assert f"{old[0]} is renamed {new[0]}" in capsys.readouterr().err
    assert f"{old[0]} " not in parser.format_help()
