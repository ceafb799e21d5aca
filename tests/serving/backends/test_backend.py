"""serving/backends/backend.py: the interface's pure parts (`info_from_signatures`, specs)."""

from __future__ import annotations

import pytest

from mrl_keras.serving import (
    FailedPrecondition,
    SignatureSpec,
    TensorInfo,
)
from mrl_keras.serving.backends.backend import info_from_signatures


def _spec(name, inputs, outputs):
    return SignatureSpec(name, inputs, outputs)


def _signatures(dims=(8, 16, 32), classify=True):
    inp = {"inputs": TensorInfo("float32", (-1, 10))}
    sigs = {
        f"embed_{m}": _spec(f"embed_{m}", inp, {"embedding": TensorInfo("float32", (-1, m))})
        for m in dims
    }
    if classify:
        for m in dims:
            sigs[f"classify_{m}"] = _spec(
                f"classify_{m}", inp, {"logits": TensorInfo("float32", (-1, 5))}
            )
        sigs["classify_cascade"] = _spec("classify_cascade", inp, {})
    sigs["embed_8_bytes"] = _spec("embed_8_bytes", {"image_bytes": TensorInfo("string", (-1,))}, {})
    return sigs


def test_info_from_signatures():
    info = info_from_signatures("m", 3, _signatures())
    assert info.exported_dims == (8, 16, 32) and info.embedding_dim == 32
    assert info.classify_dims == (8, 16, 32) and info.num_classes == 5 and info.has_cascade
    assert (info.input_name, info.input_shape, info.input_dtype) == (
        "inputs",
        (None, 10),
        "float32",
    )
    bare = info_from_signatures("m", 1, _signatures(dims=(64,), classify=False))
    assert bare.num_classes is None and not bare.has_cascade and bare.classify_dims == ()


def test_info_without_embed_signature_fails_clearly():
    with pytest.raises(FailedPrecondition, match=r"no embed_\{m\} signature"):
        info_from_signatures("m", 1, {"serving_default": _spec("serving_default", {}, {})})
