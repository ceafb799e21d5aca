"""`mrl demo`: the whole life of a Matryoshka model end to end (installed as `mrl_keras.demo`).

The one package that may import all the others (training, export, serving). The names below
are imported lazily, so `mrl demo --help` starts without TensorFlow.

Example:

```python
from mrl_keras.demo import make_config, run_demo

status = run_demo(make_config("fashion_mnist", quick=True, out="runs/demo-quick"))
```
"""

from __future__ import annotations

from mrl_keras.lazy import lazy_namespace

__all__ = [
    "DemoConfig",
    "load_report",
    "make_config",
    "render_markdown",
    "run_demo",
    "write_report",
]

_LAZY = {
    "DemoConfig": "mrl_keras.demo.demo_config",
    "make_config": "mrl_keras.demo.demo_config",
    "load_report": "mrl_keras.demo.pipeline",
    "run_demo": "mrl_keras.demo.pipeline",
    "render_markdown": "mrl_keras.demo.report",
    "write_report": "mrl_keras.demo.report",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)
