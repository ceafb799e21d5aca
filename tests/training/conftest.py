"""Fixtures for the training tests: a small real Fashion-MNIST split."""

import os
import sys

import pytest

# Plain `pytest` does not put the repository root on sys.path (see tests/mrl_keras/conftest.py).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


@pytest.fixture(scope="session")
def fashion_small():
    from mrl_keras.training.data import load_data

    return load_data("fashion_mnist", holdout=128, max_train=512, max_test=128)
