"""Serving for Matryoshka models: model backends (in-process SavedModel, TF Serving gRPC and
REST), a TF-Serving-compatible development server, the ScaNN adaptive index and retriever, the
cascade classifier client and the HTTP service (installed as `mrl_keras.serving`).

May import TensorFlow, tensorflow-serving-api and ScaNN; reads export's metadata format; never
imports `training`.
"""
