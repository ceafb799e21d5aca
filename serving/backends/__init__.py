"""Model backends: the `ModelBackend` interface and its results, the in-process SavedModel
(`LocalModel`), TF Serving over gRPC and REST with their pure request builders, the backend
errors (TF status codes), the retry policy and the cascade classifier client.

Public names are re-exported lazily by `mrl_keras.serving`; this package imports nothing on its
own, so importing one backend does not load the others' dependencies.
"""
