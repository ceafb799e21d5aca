"""Fixtures for the training tests: a small real Fashion-MNIST split."""

import pytest


@pytest.fixture(scope="session")
def fashion_small():
    from mrl_keras.training.data import load_data

    return load_data("fashion_mnist", holdout=128, max_train=512, max_test=128)


@pytest.fixture(scope="session")
def mrl_run(tmp_path_factory, fashion_small):
    """One tiny MRL run (d=16, dims 8, 16), shared by the train and evaluate tests."""
    from training_helpers import TINY

    from mrl_keras.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "mrl"
    return train(
        TrainConfig(out=str(out), epochs=1, steps_per_epoch=6, verbose=0, **TINY),
        data=fashion_small,
    )


@pytest.fixture(scope="session")
def ff_run(tmp_path_factory, fashion_small):
    """A tiny ff run: one model per dim of (8, 16)."""
    from training_helpers import TINY

    from mrl_keras.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "ff"
    return train(
        TrainConfig(out=str(out), mode="ff", epochs=1, steps_per_epoch=3, verbose=0, **TINY),
        data=fashion_small,
    )
