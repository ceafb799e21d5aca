"""`mrl classify` (serving/cli/classify.py)."""

import numpy as np
from cli_testing import assert_fails_with_one_line, assert_help, json_lines

from mrl_keras.serving.backends.cascade_client import CascadeClassifier
from mrl_keras.serving.cli.classify import main as classify_main


def test_classify_directly(exported_base_path, tiny_files, local_model, capsys):
    capsys.readouterr()
    assert (
        classify_main(
            ["--model", exported_base_path, "--inputs", str(tiny_files / "queries.npy"), "--json"]
        )
        == 0
    )
    expected = (
        CascadeClassifier(local_model).classify(np.load(tiny_files / "queries.npy")).predictions()
    )
    assert json_lines(capsys.readouterr().out) == expected


def test_bad_arguments_exit_nonzero_with_one_line(capsys):
    assert_fails_with_one_line(classify_main, ["--inputs", "q.npy"], 2, "a model is needed", capsys)


def test_help_exits_zero(capsys):
    assert_help(classify_main, ["--help"], "--inputs", capsys)
