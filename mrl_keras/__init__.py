"""mrl_keras: Matryoshka Representation Learning for Keras 3."""

from mrl_keras.cascade import calibrate_cascade, cascade_predict
from mrl_keras.fine_tune import embedding_model, matryoshka_fine_tune, truncated_embedder
from mrl_keras.matryoshka_accuracy import MatryoshkaAccuracy, matryoshka_metrics
from mrl_keras.matryoshka_contrastive_loss import MatryoshkaContrastiveLoss
from mrl_keras.matryoshka_head import MatryoshkaHead
from mrl_keras.matryoshka_loss import MatryoshkaLoss
from mrl_keras.matryoshka_prefix_loss import MatryoshkaPrefixLoss
from mrl_keras.nesting import nesting_dims, validate_nesting_dims, validate_nesting_weights
from mrl_keras.prefix_embedding import PrefixEmbedding
from mrl_keras.prefixes import l2_normalize, normalize_prefixes, truncate
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
    "truncate",
    "truncated_embedder",
    "validate_nesting_dims",
    "validate_nesting_weights",
]
