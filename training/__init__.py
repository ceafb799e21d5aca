"""Training for Matryoshka models: data pipelines, backbones, strategy selection, the fit
program and evaluation of representations (installed as `mrl_keras.training`).

May import `mrl_keras`, TensorFlow and TensorFlow Datasets; never `export` or `serving`.

Example:

```python
from mrl_keras.training import TrainConfig, evaluate, train

summary = train(TrainConfig(dataset="fashion_mnist", out="runs/fm_mrl", epochs=5))
result = evaluate({"MRL": "runs/fm_mrl"}, out="runs/fm_mrl/evaluation")
```
"""

from mrl_keras.training.data import DataSplits, load_data, make_pipeline
from mrl_keras.training.evaluate import evaluate
from mrl_keras.training.models import build_model
from mrl_keras.training.strategy import select_strategy
from mrl_keras.training.train import train
from mrl_keras.training.train_config import TrainConfig

__all__ = [
    "DataSplits",
    "TrainConfig",
    "build_model",
    "evaluate",
    "load_data",
    "make_pipeline",
    "select_strategy",
    "train",
]
