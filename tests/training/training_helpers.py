"""Helpers shared by the training tests (imported as `training_helpers`)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A tiny small_resnet: fast enough for many short runs on 2 cores.
TINY = dict(backbone="small_resnet", d=16, width=4, stem_stride=2, batch_size=32)


def subprocess_env(**extra):
    env = dict(os.environ)
    env.update(
        {
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": "tensorflow",
            "PYTHONUNBUFFERED": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
    )
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def run_python(code, timeout=240, **env):
    """Runs `code` in a fresh interpreter (for logical devices or TF_CONFIG) and returns it."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mrl_command(*args):
    return [sys.executable, "-m", "mrl_keras.cli", *args]


def tiny_train_args(out, *, max_train, batch_size, epochs, steps_per_epoch, extra=()):
    """`mrl train` arguments for a short quiet run of a tiny small_resnet on a Fashion-MNIST slice."""
    return [
        "train",
        "--out",
        str(out),
        *extra,
        "--max-train",
        str(max_train),
        "--max-test",
        "64",
        "--holdout",
        "64",
        "--d",
        "16",
        "--width",
        "4",
        "--stem-stride",
        "2",
        "--batch-size",
        str(batch_size),
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        str(steps_per_epoch),
        "--fit-verbosity",
        "0",
    ]
