"""mrl_keras/lazy.py: a lazy namespace imports a name's module on first use and caches it."""

import sys
import types

import pytest

from mrl_keras.lazy import lazy_namespace


def test_lazy_namespace(monkeypatch):
    package = types.ModuleType("fake_package")
    monkeypatch.setitem(sys.modules, "fake_package", package)
    getattr_, dir_ = lazy_namespace("fake_package", {"sqrt": "math"}, ["sqrt"])
    package.__getattr__, package.__dir__ = getattr_, dir_
    assert "sqrt" in dir_()
    import math

    assert package.sqrt is math.sqrt
    assert vars(package)["sqrt"] is math.sqrt  # cached: __getattr__ is not called again
    with pytest.raises(AttributeError, match="module 'fake_package' has no attribute 'nope'"):
        package.nope  # noqa: B018
