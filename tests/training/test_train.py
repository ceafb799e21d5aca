import json
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from training_helpers import REPO, TINY, mrl_command, subprocess_env, tiny_train_args

from mrl_keras.training import TrainConfig, train


def test_mrl_run_directory_layout(mrl_run, fashion_small):
    out = Path(mrl_run["run_dir"])
    summary = mrl_run
    for name in (
        "config.json",
        "model.keras",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
        "history.csv",
        "summary.json",
        "holdout.npz",
        "backup",
        "tensorboard",
    ):
        assert (out / name).exists(), name
    saved = json.loads((out / "summary.json").read_text())
    assert saved["nesting_dims"] == [8, 16] and set(saved["accuracy"]) == {"8", "16"}
    assert summary["steps"] == 6
    holdout = np.load(out / "holdout.npz")
    assert holdout["x"].shape == (128, 28, 28, 1) and holdout["y"].shape == (128,)
    model = keras.saving.load_model(str(out / "model.keras"))
    assert model.get_layer("matryoshka_head").nesting_dims == (8, 16)
    # same dir, different run: refused
    with pytest.raises(ValueError, match="different config.*--fresh"):
        train(
            TrainConfig(out=str(out), epochs=2, steps_per_epoch=3, verbose=0, **TINY),
            data=fashion_small,
        )


def test_fresh_starts_over(tmp_path, fashion_small):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"epochs": 7}))
    (out / "backup").mkdir()
    (out / "backup" / "training_metadata.json").write_text('{"epoch": 5, "batch": 0}')
    fresh = train(
        TrainConfig(out=str(out), epochs=1, steps_per_epoch=2, verbose=0, fresh=True, **TINY),
        data=fashion_small,
    )
    assert fresh["steps"] == 2
    assert json.loads((out / "config.json").read_text())["epochs"] == 1


def test_ff_one_model_per_dim_with_that_width(ff_run):
    out = Path(ff_run["run_dir"])
    assert sorted(ff_run["runs"], key=int) == ["8", "16"]
    for m in (8, 16):
        model = keras.saving.load_model(str(out / f"ff_{m}" / "model.keras"))
        assert model.get_layer("embedding").output.shape == (None, m)
        assert model.get_layer("matryoshka_head").nesting_dims == (m,)
        assert (out / f"ff_{m}" / "summary.json").exists()
        sub = json.loads((out / f"ff_{m}" / "config.json").read_text())
        assert sub["mode"] == "ff" and sub["dims"] == [m]


def test_init_from_with_trainable_layers_keeps_frozen_weights(tmp_path, fashion_small, mrl_run):
    base = mrl_run
    source = keras.saving.load_model(base["model"], compile=False)
    tuned = train(
        TrainConfig(
            out=str(tmp_path / "tuned"),
            mode="mrl-e",
            epochs=1,
            steps_per_epoch=2,
            verbose=0,
            init_from=base["model"],
            trainable_layers=2,
            **TINY,
        ),
        data=fashion_small,
    )
    model = keras.saving.load_model(tuned["model"], compile=False)
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        source.get_layer("stem_conv").get_weights()[0],
    )
    assert not np.array_equal(
        model.get_layer("expand_conv").get_weights()[0],
        source.get_layer("expand_conv").get_weights()[0],
    )
    with pytest.raises(ValueError, match="--trainable-layers needs --init-from"):
        TrainConfig(trainable_layers=2)


def test_mixed_precision_keeps_logits_and_loss_float32(tmp_path, fashion_small):
    summary = train(
        TrainConfig(
            out=str(tmp_path / "mp"),
            epochs=1,
            steps_per_epoch=2,
            verbose=0,
            mixed_precision=True,
            **TINY,
        ),
        data=fashion_small,
    )
    model = keras.saving.load_model(summary["model"], compile=False)
    assert model.get_layer("stem_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("matryoshka_head").dtype_policy.name == "float32"
    assert model(np.zeros((1, 28, 28, 1), np.float32)).dtype == "float32"
    assert np.isfinite(summary["test_loss"])
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_kill_after_epoch_one_and_resume(tmp_path):
    out = tmp_path / "run"
    args = tiny_train_args(out, max_train=512, batch_size=16, epochs=3, steps_per_epoch=24)
    meta = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(
        mrl_command(*args),
        cwd=REPO,
        env=subprocess_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if meta.exists():
            try:
                if json.loads(meta.read_text())["epoch"] >= 1:
                    break
            except (ValueError, KeyError):
                pass
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    first = proc.communicate(timeout=60)[0]
    assert json.loads(meta.read_text())["epoch"] == 1
    assert not (out / "model.keras").exists()
    assert "epoch 1/3" in first and "epoch 3/3" not in first

    def rerun():
        done = subprocess.run(
            mrl_command(*args),
            cwd=REPO,
            env=subprocess_env(),
            text=True,
            capture_output=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    again = rerun()
    log = again.stdout
    assert "resuming from backup at epoch 2/3" in log
    assert "epoch 1/3" not in log and "epoch 2/3" in log and "epoch 3/3" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 * 24  # the same total steps as an uninterrupted run
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]

    # a third run of the finished command trains nothing and says so (not "epoch 4/3")
    third = rerun()
    assert "already holds all 3 epochs; nothing left to train" in third.stdout
    assert "epoch 4/3" not in third.stdout and "loss=" not in third.stdout
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]


def test_learning_rate_warms_up_linearly_then_decays():
    from mrl_keras.training.train import learning_rate_schedule, warmup_steps

    config = TrainConfig(learning_rate=1e-3, warmup_epochs=1.5)
    assert warmup_steps(config, epochs=4, steps_per_epoch=10) == 15
    schedule = learning_rate_schedule(config, epochs=4, steps_per_epoch=10)
    lr = [float(schedule(step)) for step in range(41)]
    np.testing.assert_allclose(lr[:16], np.arange(16) / 15 * 1e-3, rtol=1e-5, atol=1e-9)
    assert all(a >= b for a, b in zip(lr[15:], lr[16:], strict=False))
    assert lr[40] == pytest.approx(1e-5, rel=1e-3)  # cosine to 1% of the peak at the end
    # the backbone default (one epoch), and 0 = no warmup: cosine from the first step
    assert warmup_steps(TrainConfig(), epochs=3, steps_per_epoch=7) == 7
    no_warmup = learning_rate_schedule(TrainConfig(warmup_epochs=0), 3, 7)
    assert float(no_warmup(0)) == pytest.approx(2e-3)
    # a warmup longer than the run is capped at all steps but one
    assert warmup_steps(TrainConfig(warmup_epochs=10), epochs=2, steps_per_epoch=5) == 9
    with pytest.raises(ValueError, match="warmup_epochs >= 0"):
        TrainConfig(warmup_epochs=-1)


def test_summary_records_anisotropy_and_warmup(mrl_run):
    saved = json.loads((Path(mrl_run["run_dir"]) / "summary.json").read_text())
    assert -1.0 <= saved["anisotropy_at_start"] < 0.5  # no final ReLU: zero-centred
    assert saved["warmup_steps"] == 5  # one epoch, capped at all 6 steps but one


def test_progress_estimates_the_epoch_time_once_early(capsys):
    from mrl_keras.training.train import _EpochProgress

    progress = _EpochProgress("run", epochs=4, steps=10, estimate_after=3)
    for batch in range(6):
        progress.on_train_batch_end(batch)
    lines = [line for line in capsys.readouterr().out.splitlines() if "per epoch" in line]
    assert len(lines) == 1
    assert "ms per step over 3 steps" in lines[0] and "min for 4 epochs" in lines[0]
