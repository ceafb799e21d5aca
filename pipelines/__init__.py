"""Apache Beam pipelines (installed as `mrl_keras.pipelines`): corpus -> embedding shards with
`RunInference` over the exported SavedModel (`mrl embed`), on the DirectRunner here and on
Dataflow, Flink or Spark at scale.

May import apache-beam, serving's backends and retrieval, and export's metadata format; nothing
in serving imports it. Names are imported lazily, so `import mrl_keras.pipelines` loads neither
Beam nor TensorFlow.
"""

from __future__ import annotations

from mrl_keras.lazy import lazy_namespace

__all__ = [
    "EmbedJob",
    "MatryoshkaEmbedHandler",
    "build_embed_pipeline",
    "run_embed",
]

_LAZY = {
    "EmbedJob": "mrl_keras.pipelines.embed",
    "build_embed_pipeline": "mrl_keras.pipelines.embed",
    "run_embed": "mrl_keras.pipelines.embed",
    "MatryoshkaEmbedHandler": "mrl_keras.pipelines.inference",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, __all__)
