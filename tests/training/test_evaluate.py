import json

import keras
import numpy as np
import pytest

from mrl_keras.training import evaluate
from mrl_keras.training import metrics as M
from mrl_keras.training.data import to_numpy
from mrl_keras.training.evaluate import all_dims


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mrl_run, ff_run):
    return tmp_path_factory.mktemp("eval"), mrl_run, ff_run


def test_evaluate_matches_numpy_and_writes_outputs(runs, fashion_small):
    root, mrl, ff = runs
    mrl_run_dir, ff_run_dir = mrl["run_dir"], ff["run_dir"]
    out = root / "evaluation"
    result = evaluate(
        {"MRL": mrl_run_dir},
        ff=ff_run_dir,
        data=fashion_small,
        probe_epochs=2,
        ks=(10, 25),
        out=str(out),
    )
    methods = {(r["method"], r["dim"]) for r in result["rows"]}
    assert methods == {(n, m) for n in ("MRL", "FF", "SVD", "Random") for m in (8, 16)}
    # 1-NN of MRL at m=8 recomputed by hand with NumPy from the embedding layer
    model = keras.saving.load_model(mrl["model"], compile=False)
    embed = keras.Model(model.inputs, model.get_layer("embedding").output)
    x_tr, y_tr = to_numpy(fashion_small.train)
    x_te, y_te = to_numpy(fashion_small.test)
    z_tr, z_te = np.asarray(embed(x_tr))[:, :8], np.asarray(embed(x_te))[:, :8]
    a = z_te / np.linalg.norm(z_te, axis=1, keepdims=True)
    b = z_tr / np.linalg.norm(z_tr, axis=1, keepdims=True)
    expected = np.mean(y_tr[np.argmax(a @ b.T, axis=1)] == y_te)
    row = next(r for r in result["rows"] if r["method"] == "MRL" and r["dim"] == 8)
    assert row["1nn_top1"] == pytest.approx(expected, abs=1 / len(y_te))
    head = np.argmax(np.asarray(model(x_te))[:, 0], axis=1)
    assert row["head_top1"] == pytest.approx(np.mean(head == y_te), abs=1 / len(y_te))
    assert row["flops_per_query"] == 8 * len(y_tr)
    assert {"mAP@10", "mAP@25", "P@10", "P@25", "linear_probe_top1"} <= set(row)
    for name in ("evaluation.json", "evaluation.md", "plot_1nn.png", "plot_linear_probe.png"):
        assert (out / name).exists(), name
    assert "| dim | MRL | FF | SVD | Random |" in (out / "evaluation.md").read_text()
    assert json.loads((out / "evaluation.json").read_text())["num_test"] == 128


def test_baselines_reproducible_from_seed(runs, fashion_small):
    _, _, ff = runs
    ff_run_dir = ff["run_dir"]
    kwargs = dict(ff=ff_run_dir, data=fashion_small, probe=False, ks=(10,), seed=3)
    a = evaluate(None, **kwargs)
    b = evaluate(None, **kwargs)
    pick = [r for r in a["rows"] if r["method"] in ("SVD", "Random")]
    assert pick and pick == [r for r in b["rows"] if r["method"] in ("SVD", "Random")]


def test_all_dims_and_errors(runs, fashion_small):
    assert all_dims(64, 8) == [8, 12, 16, 24, 32, 48, 64]
    root, mrl, _ = runs
    mrl_run_dir = mrl["run_dir"]
    result = evaluate(
        {"MRL": mrl_run_dir},
        data=fashion_small,
        all_dims=True,
        probe=False,
        baselines=(),
        ks=(10,),
    )
    assert sorted({r["dim"] for r in result["rows"]}) == [8, 12, 16]
    with pytest.raises(ValueError, match="Model not found"):
        evaluate({"MRL": str(root / "nope")}, data=fashion_small)
    from mrl_keras.training.data import load_data

    wrong = load_data("fashion_mnist", holdout=8, max_train=32, max_test=16, image_size=32)
    with pytest.raises(ValueError, match="expects inputs"):
        evaluate({"MRL": mrl_run_dir}, data=wrong, probe=False)
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        evaluate(None, data=fashion_small)
    assert M.exact_search_flops(8, 10) == 80
