"""mrl_keras/optional.py: optional dependencies name the extra that installs them, and the
extras exist in pyproject.toml while the core dependencies leave these packages out."""

from __future__ import annotations

import pathlib
import re
import sys

import pytest

from mrl_keras import optional

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

PYPROJECT = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_a_missing_module_names_its_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot"):  # as if not installed (even if imported)
        monkeypatch.setitem(sys.modules, name, None)
    assert not optional.available("matplotlib")
    with pytest.raises(optional.MissingDependency) as e:
        optional.require("matplotlib.pyplot", "the plots")
    assert str(e.value) == (
        "the plots needs matplotlib, which is not installed. Install it with "
        "`pip install 'mrl-keras[plots]'` (or `pip install matplotlib`)."
    )
    assert isinstance(e.value, ValueError)  # the commands print it as a one-line reason


def test_a_present_module_is_returned_and_an_unknown_one_refused():
    pytest.importorskip("fontTools")
    import fontTools.ttLib

    assert optional.require("fontTools.ttLib", "x") is fontTools.ttLib
    with pytest.raises(ValueError, match="Expected one of"):
        optional.require("numpy", "x")


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_the_core_install_leaves_the_optional_packages_to_their_extras():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    core = {re.split(r"[<>=!~\[ ]", d)[0].lower() for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    for package, extra in optional.EXTRAS.values():
        assert package not in core
        assert any(d.lower().startswith(package) for d in extras[extra]), (package, extra)
        assert extra in extras["dev"][0]  # CI installs it
