"""mrl_keras: Matryoshka Representation Learning for Keras 3.

The public names below are imported lazily (module `__getattr__`), so `import mrl_keras` and
`import mrl_keras.export.metadata` or `import mrl_keras.serving` load neither Keras nor
TensorFlow until a Keras object is used.

Keras finds the package's layers, losses and metrics when `keras.saving.load_model` reads a
`.keras` file only once their modules are imported. `import mrl_keras` registers them at once
when Keras is already imported (the usual `import keras` first, then `import mrl_keras`);
otherwise call `mrl_keras.register_keras_objects()` (or use any Keras object of the package)
before loading.
"""

from __future__ import annotations

import importlib
import sys

from mrl_keras.lazy import lazy_namespace
from mrl_keras.version import __version__

__all__ = [
    "MatryoshkaAccuracy",
    "MatryoshkaContrastiveLoss",
    "MatryoshkaHead",
    "MatryoshkaLoss",
    "MatryoshkaPrefixLoss",
    "PrefixEmbedding",
    "__version__",
    "calibrate_cascade",
    "cascade_predict",
    "embedding_model",
    "l2_normalize",
    "matryoshka_fine_tune",
    "matryoshka_metrics",
    "nesting_dims",
    "normalize_prefixes",
    "register_keras_objects",
    "truncate",
    "truncated_embedder",
    "validate_nesting_dims",
    "validate_nesting_weights",
]

_LAZY = {
    "MatryoshkaAccuracy": "mrl_keras.matryoshka_accuracy",
    "matryoshka_metrics": "mrl_keras.matryoshka_accuracy",
    "MatryoshkaContrastiveLoss": "mrl_keras.matryoshka_contrastive_loss",
    "MatryoshkaHead": "mrl_keras.matryoshka_head",
    "MatryoshkaLoss": "mrl_keras.matryoshka_loss",
    "MatryoshkaPrefixLoss": "mrl_keras.matryoshka_prefix_loss",
    "PrefixEmbedding": "mrl_keras.prefix_embedding",
    "embedding_model": "mrl_keras.fine_tune",
    "matryoshka_fine_tune": "mrl_keras.fine_tune",
    "truncated_embedder": "mrl_keras.fine_tune",
    "calibrate_cascade": "mrl_keras.cascade",
    "cascade_predict": "mrl_keras.cascade",
    "nesting_dims": "mrl_keras.nesting",
    "validate_nesting_dims": "mrl_keras.nesting",
    "validate_nesting_weights": "mrl_keras.nesting",
    "l2_normalize": "mrl_keras.prefixes",
    "normalize_prefixes": "mrl_keras.prefixes",
    "truncate": "mrl_keras.prefixes",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)


def register_keras_objects() -> None:
    """Imports the package's core modules, which registers its Keras layers, losses and metrics.

    Call it before `keras.saving.load_model` reads a `.keras` file holding a `MatryoshkaHead`
    (or a model compiled with a Matryoshka loss or metric) when nothing of the package has been
    used yet in the process. Idempotent and cheap after the first call.
    """
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")


if "keras" in sys.modules:
    register_keras_objects()
