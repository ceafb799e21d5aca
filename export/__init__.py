"""Export of Matryoshka models as TF Serving SavedModels with one signature per prefix,
per-prefix classifiers and an in-graph cascade (installed as `mrl_keras.export`).

May import `mrl_keras` and TensorFlow.
"""
