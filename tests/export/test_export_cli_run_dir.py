"""`mrl export --model RUN_DIR`: a training run's folder stands for its model.keras.

Keras' `load_model` on a folder used to surface as "cannot access local variable
'weights_store'"."""

import pytest
from export_testing import make_model

from mrl_keras.export import read_metadata
from mrl_keras.export.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """What `mrl train --out RUN` leaves: RUN/model.keras (and more)."""
    run = tmp_path_factory.mktemp("run")
    make_model().save(run / "model.keras")
    return run


def test_a_run_folder_exports_its_model(run_dir, tmp_path, capsys):
    base = tmp_path / "served"
    argv = ["--model", str(run_dir), "--model-base-path", str(base), "--no-verify", "--no-warmup"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "weights_store" not in capsys.readouterr().err
    assert read_metadata(base)["version"] == 1
    assert (base / "1" / "saved_model.pb").exists()


def test_a_folder_without_a_model_is_one_line(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = tmp_path / "served"
    assert main(["--model", str(empty), "--model-base-path", str(base)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mrl export: error: --model: the folder")
    assert "has no model.keras" in err[-1] and "weights_store" not in err[-1]
    assert not base.exists()
    # A folder of runs names the runs' models (a folder of its own: the shared temp folder
    # holds more runs than the hint lists).
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / run_dir.name).symlink_to(run_dir, target_is_directory=True)
    assert main(["--model", str(runs), "--model-base-path", str(base)]) == 1
    assert f"it holds {runs / run_dir.name / 'model.keras'}" in capsys.readouterr().err
