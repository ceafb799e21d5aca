"""Optional dependencies: imported where a feature needs them, with the extra that installs them.

The core install (`pip install mrl-keras`) trains, exports and serves; these come with extras:

| module | pip package | extra | needed by |
|---|---|---|---|
| `matplotlib` | matplotlib | `plots` (also in `demo`) | `mrl evaluate`'s PNG plots, `mrl demo`'s figures, benchmark plots |
| `fontTools` | fonttools | `cjk` | the CJK glyph dataset (`--dataset cjk`) |
| `tensorflow_datasets` | tensorflow-datasets | `tfds` (also in `demo`) | TFDS datasets, and Fashion-MNIST when its IDX files are not on disk |
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingDependency", "available", "require"]

# import name -> (pip package, extra)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "plots"),
    "fontTools": ("fonttools", "cjk"),
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
}


class MissingDependency(ImportError, ValueError):
    """An optional dependency a feature needs is not installed; the message says how to get it.

    Also a `ValueError`, so the commands that print a one-line reason for bad input print this.
    """


def available(module: str) -> bool:
    """Whether `module` (one of `EXTRAS`) can be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(module: str, feature: str) -> ModuleType:
    """Imports `module`, or raises `MissingDependency` naming the extra that installs it.

    Args:
        module: str. The import name, a key of `EXTRAS` or a submodule of one
            (`"matplotlib.pyplot"`).
        feature: str. What needs it, for the message (e.g. `"mrl evaluate's PNG plots"`).
    """
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise ValueError(f"Expected one of {sorted(EXTRAS)}. Received: module={module!r}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package, extra = EXTRAS[top]
        raise MissingDependency(
            f"{feature} needs {package}, which is not installed. Install it with "
            f"`pip install 'mrl-keras[{extra}]'` (or `pip install {package}`)."
        ) from e
