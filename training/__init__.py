"""Training for Matryoshka models: data pipelines, backbones, strategy selection, the fit
program and evaluation of representations (installed as `mrl_keras.training`).

May import `mrl_keras`, TensorFlow and TensorFlow Datasets; never `export` or `serving`. The
names below are imported lazily (module `__getattr__`), so `mrl train --help` starts without
TensorFlow.

Example:

```python
from mrl_keras.training import TrainConfig, evaluate, train

summary = train(TrainConfig(dataset="fashion_mnist", out="runs/fm_mrl", epochs=5))
result = evaluate({"MRL": "runs/fm_mrl"}, out="runs/fm_mrl/evaluation")
```
"""

from __future__ import annotations

import sys
import types
from typing import Any

from mrl_keras.lazy import lazy_namespace

__all__ = [
    "CrossReplicaContrastiveLoss",
    "DataSplits",
    "TrainConfig",
    "build_model",
    "evaluate",
    "load_data",
    "make_pipeline",
    "select_strategy",
    "train",
]

_LAZY = {
    "CrossReplicaContrastiveLoss": "mrl_keras.training.cross_replica_contrastive_loss",
    "DataSplits": "mrl_keras.training.data",
    "load_data": "mrl_keras.training.data",
    "make_pipeline": "mrl_keras.training.data",
    "evaluate": "mrl_keras.training.evaluate",
    "build_model": "mrl_keras.training.models",
    "select_strategy": "mrl_keras.training.strategy",
    "train": "mrl_keras.training.train",
    "TrainConfig": "mrl_keras.training.train_config",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)


# `evaluate` and `train` name both a function and the module that defines it. Importing the
# module binds the package attribute to the module; keep the public name on the function, as
# an eager `from mrl_keras.training.train import train` here would.
_FUNCTION_OVER_MODULE = frozenset({"evaluate", "train"})


class _Namespace(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTION_OVER_MODULE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Namespace
