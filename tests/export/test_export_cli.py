"""`mrl export`: flags, the result on disk, and one-line errors that leave nothing behind."""

import os

import numpy as np
import pytest
from export_testing import DIMS, make_model, random_inputs

from mrl_keras.export import read_metadata
from mrl_keras.export.cli import main
from mrl_keras.export.saved_model import check_backend


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training-run-like folder: model.keras, an embedding-only model and holdout.npz."""
    run = tmp_path_factory.mktemp("run")
    model = make_model()
    model.save(run / "model.keras")
    make_model(head=False).save(run / "embedder.keras")
    x = random_inputs(300, seed=4)
    y = model.predict(x, verbose=0)[:, -1].argmax(-1)
    np.savez(run / "holdout.npz", x=x, y=y)
    np.savez(run / "no_labels.npz", x=x)
    return run


def export_argv(run_dir, base, *flags):
    """`mrl export` arguments exporting the run's model.keras to `base`, then `flags`."""
    return ["--model", str(run_dir / "model.keras"), "--model-base-path", str(base), *flags]


def test_export_with_calibration(run_dir, tmp_path, capsys):
    base = tmp_path / "served"
    argv = export_argv(run_dir, base, "--extra-dims", "24,12")
    argv += ["--calibrate-on", str(run_dir / "holdout.npz"), "--model-name", "tiny"]
    argv += ["--class-names", "a,b,c,d,e", "--no-warmup"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "exported version 1" in out.out
    assert "cascade thresholds" in out.err
    meta = read_metadata(base)
    assert meta["version"] == 1 and meta["model_name"] == "tiny"
    assert meta["exported_dims"] == [8, 12, 16, 24, 32]
    assert meta["class_names"] == list("abcde")
    calibration = meta["cascade"]["calibration"]
    assert calibration["accuracy"] >= calibration["target_accuracy"]
    assert not os.path.exists(base / "1" / "assets.extra")
    # Next free version, explicit thresholds, no normalisation.
    argv = export_argv(run_dir, base, "--thresholds", "0.5,0.6,0", "--no-normalize", "--no-verify")
    assert main(argv) == 0
    meta = read_metadata(base)
    assert meta["version"] == 2 and meta["normalized"] is False
    assert meta["cascade"]["thresholds"] == [0.5, 0.6, 0.0]
    assert meta["cascade"]["calibration"] is None
    assert os.path.exists(base / "2" / "assets.extra" / "tf_serving_warmup_requests")


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--model", "{run}/missing.keras"], "no such file"),
        (["--model", "{run}/holdout.npz"], "cannot load --model"),
        (["--thresholds", "0.5,0.5"], "one cascade threshold per nesting dim"),
        (["--thresholds", "0.5,x,0"], "comma-separated numbers"),
        (["--extra-dims", "48"], "extra_dims"),
        (["--calibrate-on", "{run}/no_labels.npz"], "expected arrays 'x' and 'y'"),
        (["--calibrate-on", "{run}/holdout.npz", "--thresholds", "0,0,0"], "not both"),
        (["--target-accuracy", "0.9"], "need --calibrate-on"),
        (["--model", "{run}/embedder.keras", "--embedding-layer", "z"], "No embedding layer"),
        (["--model", "{run}/embedder.keras", "--nesting-dims", "8,64"], "do not fit"),
        (["--model-base-path", "{run}/holdout.npz/models"], "not a directory"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path, capsys, flags, match):
    base = tmp_path / "served"
    argv = export_argv(run_dir, base, *(f.format(run=run_dir) for f in flags))
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mrl export: error:")
    assert match in err[-1]
    assert not base.exists()


def test_existing_version_needs_overwrite(run_dir, tmp_path, capsys):
    base = tmp_path / "served"
    argv = export_argv(run_dir, base, "--model-version", "7", "--no-warmup", "--no-verify")
    assert main(argv) == 0
    before = os.stat(base / "7" / "saved_model.pb").st_mtime_ns
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err.splitlines()[-1]
    assert os.stat(base / "7" / "saved_model.pb").st_mtime_ns == before
    assert main([*argv, "--overwrite", "--extra-dims", "4"]) == 0
    assert read_metadata(base / "7")["exported_dims"] == [4, *DIMS]
    assert sorted(os.listdir(base)) == ["7"]


def test_missing_required_flag_is_one_line():
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "m.keras"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("backend", ["jax", "torch", "numpy"])
def test_non_tensorflow_backend_is_refused(backend):
    # Only the TensorFlow backend is installed here, so the check is tested on its argument;
    # export_saved_model and `mrl export` call it with Keras's current backend first thing.
    with pytest.raises(ValueError, match=f"TensorFlow Keras backend.*backend='{backend}'"):
        check_backend(backend)
    check_backend("tensorflow")


@pytest.mark.parametrize(
    "old, new",
    [
        (["--base-path", "models/m"], ["--model-base-path", "models/m"]),
        (["--version", "3"], ["--model-version", "3"]),
    ],
)
def test_old_flag_names_are_hidden_aliases(old, new, capsys):
    from mrl_keras.export.cli import _parser

    required = ["--model", "run"] + (["--model-base-path", "b"] if "base" not in old[0] else [])
    parser = _parser()
    assert vars(parser.parse_args(required + old)) == vars(parser.parse_args(required + new))
    assert f"{old[0]} is renamed {new[0]}" in capsys.readouterr().err
    assert f"{old[0]} " not in parser.format_help()


def test_server_files_load_in_the_dev_server_which_splits_an_over_size_request(
    run_dir, tmp_path, capsys
):
    import requests

    from mrl_keras.serving import LocalModel, ModelServer
    from mrl_keras.serving.model_server.server_files import (
        read_batching_parameters,
        read_monitoring_config,
    )

    base, batching, monitoring = tmp_path / "m", tmp_path / "batching.txt", tmp_path / "mon.cfg"
    argv = export_argv(run_dir, base)
    argv += ["--batching-parameters-file", str(batching), "--batch-sizes", "1,2,8"]
    argv += ["--monitoring-config-file", str(monitoring), "--no-warmup", "--json"]
    assert main(argv) == 0
    assert '"server_files"' in capsys.readouterr().out
    params = read_batching_parameters(str(batching))
    assert params.max_batch_size in (1, 2, 8)
    assert params.allowed_batch_sizes[-1] == params.max_batch_size
    server = ModelServer(
        str(base),
        "m",
        port=None,
        rest_api_port=0,
        batching=params,
        monitoring=read_monitoring_config(str(monitoring)),
    ).start(wait_for_model_s=60)
    try:
        x = random_inputs(2 * params.max_batch_size + 1, seed=9)
        reply = requests.post(
            f"{server.rest_url}/v1/models/m:predict",
            json={"signature_name": "embed_16", "instances": x.tolist()},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        got = np.asarray(reply.json()["predictions"], np.float32)
        expected = LocalModel(str(base)).embed(x, 16).embeddings
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert server.manager.batcher.batches >= 3  # split into chunks of max_batch_size
        metrics = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10)
        assert metrics.status_code == 200
        assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 1' in metrics.text
        assert f"mrl_model_server_batched_rows_total {len(x)}" in metrics.text
    finally:
        server.stop()


def test_write_model_config_for_tf_serving(run_dir, tmp_path, capsys):
    from mrl_keras.serving.model_server.model_config import VersionPolicy, read_model_config

    base, config = tmp_path / "models" / "fm", tmp_path / "models.config"
    argv = export_argv(run_dir, base)
    argv += ["--write-model-config", str(config), "--num-versions", "2"]
    argv += ["--version-label", "stable=1", "--no-warmup", "--no-verify", "--json"]
    assert main(argv) == 0
    assert '"model_config"' in capsys.readouterr().out
    model = read_model_config(config)  # parsed as TF Serving's ModelServerConfig proto
    assert (model.name, model.base_path) == ("fm", str(base))
    assert model.policy == VersionPolicy("latest", 2) and model.version_labels == {"stable": 1}
    for bad, match in (
        (["--num-versions", "0"], "--num-versions must be >= 1"),
        (["--version-label", "x"], "LABEL=VERSION"),
    ):
        assert main(argv[:4] + ["--write-model-config", str(config)] + bad) == 1
        assert match in capsys.readouterr().err
    assert main(argv[:4] + ["--version-label", "a=1"]) == 1
    assert "need --write-model-config" in capsys.readouterr().err
