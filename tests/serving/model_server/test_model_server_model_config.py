"""serving/model_server/model_config.py: TF Serving model config files for the dev server
(written by mrl_keras.export.model_config), and the version policies they set."""

import os
import time

import pytest
from serving_testing import MODEL_NAME, copy_version

from mrl_keras.export.model_config import model_config_text
from mrl_keras.serving.model_server.model_config import (
    VersionPolicy,
    aspired_versions,
    read_model_config,
)


def test_policies_choose_versions():
    on_disk = [1, 2, 5, 7]
    assert aspired_versions(VersionPolicy("latest", 2), on_disk) == [5, 7]
    assert aspired_versions(VersionPolicy("specific", versions=(2, 9)), on_disk) == [2]
    assert aspired_versions(VersionPolicy("all"), on_disk) == on_disk
    with pytest.raises(ValueError, match="latest, specific, all"):
        VersionPolicy("newest")


def test_round_trip_of_what_export_writes(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(model_config_text("tiny", "/m/tiny", num_versions=3, labels={"stable": 2}))
    model = read_model_config(path)
    assert (model.name, model.base_path, model.model_platform) == ("tiny", "/m/tiny", "tensorflow")
    assert model.policy == VersionPolicy("latest", 3) and model.version_labels == {"stable": 2}
    path.write_text(model_config_text("tiny", "/m/tiny", versions=[1, 4]))
    assert read_model_config(path).policy == VersionPolicy("specific", versions=(1, 4))


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'b' "
            "base_path: '/b' } }",
            r"exactly one model.*\['a', 'b'\]",
        ),
        ("model_config_list { config { name: 'a' } }", "base_path"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_platform: 'x' } }",
            "model_platform",
        ),
        ("model_config_list { conf {", "Malformed"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { "
            "specific { versions: 1 } } version_labels { key: 'c' value: 2 } } }",
            "does not serve",
        ),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, text, match):
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_model_config(path)
    with pytest.raises(ValueError, match="Cannot read"):
        read_model_config(tmp_path / "missing.config")


def test_dev_server_keeps_the_newest_two_from_a_config_file(
    tmp_path, exported_base_path, exported_v2_dir, start_model_server
):
    from mrl_keras.serving.cli.model_server import main
    from mrl_keras.serving.model_server.model_config import read_model_config

    base = tmp_path / MODEL_NAME
    base.mkdir()
    copy_version(os.path.join(exported_base_path, "1"), str(base), 1)
    config = tmp_path / "models.config"
    config.write_text(model_config_text(MODEL_NAME, str(base), num_versions=2))
    model = read_model_config(config)
    server = start_model_server(model.base_path, poll_interval_s=0.1, version_policy=model.policy)
    copy_version(exported_v2_dir, str(base), 2)
    assert server.manager.wait_until_available(60, version=2)
    states = {s.version: s.state for s in server.manager.status(MODEL_NAME)}
    assert states == {1: "AVAILABLE", 2: "AVAILABLE"}
    copy_version(exported_v2_dir, str(base), 3)
    assert server.manager.wait_until_available(60, version=3)
    deadline = time.monotonic() + 30
    while server.manager.status(MODEL_NAME)[0].state != "END":
        assert time.monotonic() < deadline, server.manager.status(MODEL_NAME)
        time.sleep(0.05)
    states = {s.version: s.state for s in server.manager.status(MODEL_NAME)}
    assert states == {1: "END", 2: "AVAILABLE", 3: "AVAILABLE"}
    # The command refuses a config file together with --model-base-path, and a bad file.
    assert main(["--model-config-file", str(config), "--model-base-path", str(base)]) == 2
    (tmp_path / "bad.config").write_text("nonsense {")
    assert main(["--model-config-file", str(tmp_path / "bad.config")]) == 2
    assert main([]) == 2
