"""`export_saved_model`: a Matryoshka Keras model as a versioned SavedModel for TF Serving."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

import mrl_keras
from mrl_keras.cascade import CascadeCalibration, calibrate_cascade
from mrl_keras.checks import is_int
from mrl_keras.export import signatures as sigs
from mrl_keras.export.metadata import FORMAT_VERSION, write_metadata
from mrl_keras.export.model_parts import Parts, find_parts, head_probabilities
from mrl_keras.export.version_folder import atomic_version_folder, check_writable, resolve_version
from mrl_keras.export.warmup import write_warmup_requests

DEFAULT_CASCADE_THRESHOLD = 0.9
"""Threshold of every prefix but the last when the cascade is not calibrated."""

INPUT_NAME = "inputs"
BYTES_INPUT_NAME = "image_bytes"


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """What `export_saved_model` wrote.

    Attributes:
        path: str. The version folder, `base_path/<version>`.
        version: int. The version number.
        signatures: tuple of str. Every signature name but `serving_default`.
        metadata: dict. The content of `assets/matryoshka.json`.
        calibration: `mrl_keras.cascade.CascadeCalibration` or `None`. The calibration baked
            into `classify_cascade`, when one ran.
    """

    path: str
    version: int
    signatures: tuple[str, ...]
    metadata: dict[str, Any]
    calibration: CascadeCalibration | None = None


def check_backend(backend: str | None = None) -> None:
    """Raises `ValueError` unless `backend` (default: Keras's current one) is TensorFlow.

    SavedModels with TF Serving signatures come from TensorFlow graphs; the JAX and PyTorch
    routes of `keras.export` cannot express the in-graph cascade's data-dependent shapes.
    """
    backend = keras.backend.backend() if backend is None else backend
    if backend != "tensorflow":
        raise ValueError(
            "Expected the TensorFlow Keras backend for SavedModel export. Received: "
            f"backend={backend!r}. Run with KERAS_BACKEND=tensorflow."
        )


def _check_dims(values: Sequence[Any] | None, d: int, name: str) -> tuple[int, ...]:
    values = tuple(values or ())
    bad = [v for v in values if not is_int(v) or not 1 <= v <= d]
    if bad:
        raise ValueError(
            f"Expected {name} to be ints in [1, {d}] (the embedding has {d} dims). "
            f"Received: {name}={values}"
        )
    return tuple(int(v) for v in values)


def _check_thresholds(thresholds: Sequence[float], dims: tuple[int, ...]) -> tuple[float, ...]:
    values = tuple(thresholds)
    if len(values) != len(dims):
        raise ValueError(
            f"Expected one cascade threshold per nesting dim {dims} ({len(dims)}). "
            f"Received {len(values)}: {values}"
        )
    if not all(isinstance(t, numbers.Real) and math.isfinite(t) for t in values):
        raise ValueError(f"Expected finite cascade thresholds. Received: {values}")
    return tuple(float(t) for t in values)


def _input_spec(parts: Parts) -> tuple[list[int | None], str]:
    shape = [None] + [None if s is None else int(s) for s in tuple(parts.inputs.shape)[1:]]
    dtype = keras.backend.standardize_dtype(parts.inputs.dtype)
    return shape, dtype


def _image_layout(shape: list[int | None]) -> tuple[int, int, int, bool]:
    if len(shape) == 3 and None not in shape[1:]:
        return shape[1], shape[2], 1, True
    if len(shape) == 4 and None not in shape[1:] and shape[3] in (1, 3, 4):
        return shape[1], shape[2], shape[3], False
    raise ValueError(
        "Expected an image input of shape (batch, H, W) or (batch, H, W, C) with C in 1, 3, 4 "
        f"and H, W known for bytes signatures. Received: input shape {tuple(shape)}. "
        "Drop --bytes-signatures for this model."
    )


def _warmup_array(shape: list[int | None], dtype: str) -> np.ndarray:
    concrete = [1] + [1 if s is None else s for s in shape[1:]]
    return np.zeros(concrete, dtype=dtype)


def _warmup_image(height: int, width: int, channels: int) -> np.ndarray:
    import tensorflow as tf

    png = tf.io.encode_png(tf.zeros((height, width, channels), tf.uint8))
    return np.array([png.numpy()], dtype=object)


def _verify(path: str, requests: Sequence[tuple[str, dict[str, np.ndarray]]]) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    for name, inputs in requests:
        outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        for key, value in outputs.items():
            if value.shape[0] != 1:
                raise RuntimeError(
                    f"Signature {name} returned {key} of shape {value.shape} for one example."
                )


def export_saved_model(
    model: keras.Model,
    base_path: str | os.PathLike,
    version: int | None = None,
    *,
    extra_dims: Sequence[int] = (),
    normalize: bool = True,
    nesting_dims: Sequence[int] | None = None,
    cascade_thresholds: Sequence[float] | None = None,
    calibration_data: tuple[Any, Any] | None = None,
    target_accuracy: float | None = None,
    max_expected_dim: float | None = None,
    bytes_signatures: bool = False,
    bytes_scale: float = 1.0 / 255.0,
    model_name: str | None = None,
    class_names: Sequence[str] | None = None,
    embedding_layer: str = "embedding",
    head_layer: str = "matryoshka_head",
    overwrite: bool = False,
    warmup: bool = True,
    verify: bool = True,
) -> ExportedModel:
    """Exports a Matryoshka model as `base_path/<version>/`, a SavedModel for TF Serving.

    Signatures (input `inputs`, the model's input; batch size free):
    - `embed_{m}` for every nesting dim, extra dim and `d`: output `embedding` float32
      `(batch, m)`, the prefix `z[:, :m]` L2-normalised on its own (raw with
      `normalize=False`). `serving_default` is `embed_{d}`.
    - `classify_{m}` for every nesting dim, when the model has a `MatryoshkaHead`: `logits` and
      `probabilities` float32 `(batch, L)`, `classes` int64 `(batch,)`, `scores` float32
      `(batch,)` (the max probability).
    - `classify_cascade` (with a head): `classes` int64, `scores` float32, `dims_used` int32, all
      `(batch,)`: early-exit adaptive classification (section 4.2.1), where only the examples a
      prefix leaves unresolved go on to the next prefix's head.
    - with `bytes_signatures`, each of the above again as `<name>_bytes`, whose input
      `image_bytes` is a string `(batch,)` of encoded JPEG/PNG images, decoded, resized and scaled
      by `bytes_scale` in the graph.

    Also writes `assets/matryoshka.json` (see `mrl_keras.export.metadata`) and
    `assets.extra/tf_serving_warmup_requests`. The graph holds standard TensorFlow ops only. The
    version folder is written to a hidden temporary sibling and renamed into place, so a polling
    server never sees half a version; on any error nothing is left behind.

    Args:
        model: a functional `keras.Model`: input -> ... -> layer `embedding_layer` (output
            `(batch, d)`) [-> `MatryoshkaHead` named `head_layer`].
        base_path: the model base path TF Serving watches.
        version: int or `None`. The version folder; defaults to the next free integer.
        extra_dims: sequence of int. Further `embed_{m}` signatures (e.g. `(24, 96)`).
        normalize: bool. L2-normalise every prefix. Defaults to `True`.
        nesting_dims: sequence of int or `None`. For models without a head: the prefixes to
            export. Defaults to the head's, or `mrl_keras.nesting_dims(d)`.
        cascade_thresholds: sequence of float or `None`. One max-softmax threshold per nesting
            dim for `classify_cascade` (the last is not consulted). Defaults to calibrated ones
            with `calibration_data`, else 0.9 for every prefix but the last.
        calibration_data: `(x, y)` or `None`. A holdout set to learn the thresholds on with
            `mrl_keras.calibrate_cascade`.
        target_accuracy, max_expected_dim: passed to `calibrate_cascade`.
        bytes_signatures: bool. Add the `*_bytes` signatures. Defaults to `False`.
        bytes_scale: float. Factor applied to decoded pixel values (0..255). Defaults to 1/255.
        model_name: str or `None`. Defaults to the base path's folder name (TF Serving's
            convention).
        class_names: sequence of str or `None`. Stored in the metadata.
        embedding_layer, head_layer: str. Layer names to look for; without a layer named
            `embedding_layer`, the input of the (only) MatryoshkaHead is the embedding.
        overwrite: bool. Replace an existing version folder. Defaults to `False`.
        warmup: bool. Write the warmup requests. Defaults to `True`.
        verify: bool. Load the written SavedModel and run one request per signature before
            renaming it into place. Defaults to `True`.

    Returns:
        An `ExportedModel` with the path, version, signature names and metadata.

    Raises:
        ValueError: on a non-TensorFlow Keras backend, a model without an embedding, nesting or
            extra dims that do not fit the embedding, thresholds of the wrong length, an existing
            version without `overwrite`, or a base path that cannot be written.
        TypeError: on arguments of the wrong type.

    Example:

    ```python
    exported = mrl_keras.export.export_saved_model(model, "models/fashion_mnist")
    # models/fashion_mnist/1/ with embed_8 ... embed_64, classify_8 ..., classify_cascade
    ```
    """
    check_backend()
    import tensorflow as tf

    parts = find_parts(model, embedding_layer, head_layer)
    d = int(parts.embedding.shape[-1])
    head = parts.head
    if head is not None:
        dims = tuple(head.nesting_dims)
        if nesting_dims is not None and tuple(nesting_dims) != dims:
            raise ValueError(
                f"Expected nesting_dims to match the head's {dims}. Received: "
                f"nesting_dims={tuple(nesting_dims)}. Leave them out for models with a head."
            )
    elif nesting_dims is not None:
        dims = mrl_keras.validate_nesting_dims(nesting_dims)
    else:
        dims = mrl_keras.nesting_dims(d) if d >= 8 else (d,)
    if dims[-1] > d:
        raise ValueError(
            f"Nesting dims {dims} do not fit the embedding of {d} dims. "
            "Drop the dims larger than the embedding."
        )
    extra = _check_dims(extra_dims, d, "extra_dims")
    exported = tuple(sorted(set(dims) | set(extra) | {d}))
    if not isinstance(normalize, bool):
        raise TypeError(f"Expected a bool normalize. Received: normalize={normalize!r}")

    base = os.path.abspath(os.fspath(base_path))
    if model_name is None:
        model_name = os.path.basename(base) or "model"
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"Expected a non-empty model_name. Received: {model_name!r}")
    shape, dtype = _input_spec(parts)
    layout = _image_layout(shape) if bytes_signatures else None
    check_writable(base)
    version = resolve_version(base, version, overwrite)

    calibration = None
    thresholds = None
    if head is None:
        if cascade_thresholds is not None or calibration_data is not None:
            raise ValueError(
                "Cascade thresholds and calibration need a model with a MatryoshkaHead; "
                f"model {model.name!r} has none."
            )
        if class_names is not None:
            raise ValueError("class_names need a model with a MatryoshkaHead.")
    else:
        if cascade_thresholds is not None and calibration_data is not None:
            raise ValueError("Expected either cascade_thresholds or calibration_data, not both.")
        if cascade_thresholds is not None:
            thresholds = _check_thresholds(cascade_thresholds, dims)
        elif calibration_data is not None:
            x, y = calibration_data
            probabilities = head_probabilities(
                model, x, embedding_layer=embedding_layer, head_layer=head_layer
            )
            calibration = calibrate_cascade(
                probabilities,
                np.asarray(y).astype(np.int64),
                dims,
                target_accuracy=target_accuracy,
                max_expected_dim=max_expected_dim,
            )
            thresholds = calibration.thresholds
        else:
            thresholds = (DEFAULT_CASCADE_THRESHOLD,) * (len(dims) - 1) + (0.0,)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != head.num_classes:
                raise ValueError(
                    f"Expected {head.num_classes} class names. Received {len(class_names)}."
                )

    outputs = {"embedding": parts.embedding}
    if head is not None:
        outputs["head_input"] = parts.head_input
    features = keras.Model(parts.inputs, outputs, name=f"{model.name}_features")

    functions: dict[str, sigs.Fn] = {}
    for m in (d, *[m for m in exported if m != d]):
        functions[f"embed_{m}"] = sigs.embed_fn(features, m, normalize)
    if head is not None:
        for m in dims:
            functions[f"classify_{m}"] = sigs.classify_fn(features, head, m)
        functions["classify_cascade"] = sigs.cascade_fn(features, head, dims, thresholds)

    archive = keras.export.ExportArchive()
    archive.track(features)
    spec = tf.TensorSpec(shape, tf.as_dtype(dtype), name=INPUT_NAME)
    bytes_spec = tf.TensorSpec([None], tf.string, name=BYTES_INPUT_NAME)
    zeros = _warmup_array(shape, dtype)
    requests: list[tuple[str, dict[str, np.ndarray]]] = []
    for name, fn in functions.items():
        archive.add_endpoint(name, fn, input_signature=[spec])
        requests.append((name, {INPUT_NAME: zeros}))
    if layout is not None:
        height, width, channels, squeeze = layout
        image = _warmup_image(height, width, channels)
        for name, fn in list(functions.items()):
            wrapped = sigs.decode_images_fn(
                fn, height, width, channels, tf.as_dtype(dtype), float(bytes_scale), squeeze
            )
            archive.add_endpoint(f"{name}_bytes", wrapped, input_signature=[bytes_spec])
            requests.append((f"{name}_bytes", {BYTES_INPUT_NAME: image}))
    names = sorted((n for n, _ in requests), key=_signature_order)

    metadata = {
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "embedding_dim": d,
        "nesting_dims": list(dims),
        "exported_dims": list(exported),
        "num_classes": None if head is None else int(head.num_classes),
        "class_names": None if class_names is None else list(class_names),
        "normalized": normalize,
        "cascade": None
        if head is None
        else {
            "dims": list(dims),
            "thresholds": list(thresholds),
            "calibration": None if calibration is None else calibration.to_dict(),
        },
        "input": {"name": INPUT_NAME, "shape": shape, "dtype": dtype},
        "bytes_input": None
        if layout is None
        else {
            "name": BYTES_INPUT_NAME,
            "height": layout[0],
            "width": layout[1],
            "channels": layout[2],
            "scale": float(bytes_scale),
        },
        "signatures": names,
    }
    with atomic_version_folder(base, version, overwrite=overwrite) as temp:
        archive.write_out(temp, verbose=False)
        write_metadata(temp, metadata)
        if warmup:
            write_warmup_requests(temp, model_name, requests)
        if verify:
            _verify(temp, requests)
    return ExportedModel(
        path=os.path.join(base, str(version)),
        version=version,
        signatures=tuple(names),
        metadata=metadata,
        calibration=calibration,
    )


def _signature_order(name: str) -> tuple[int, int, int, str]:
    is_bytes = name.endswith("_bytes")
    stem = name[: -len("_bytes")] if is_bytes else name
    kind, _, size = stem.rpartition("_")
    rank = {"embed": 0, "classify": 1}.get(kind, 2)
    return (int(is_bytes), rank, int(size) if size.isdigit() else 1 << 30, name)
