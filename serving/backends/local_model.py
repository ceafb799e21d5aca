"""`LocalModel`: a Matryoshka SavedModel called in-process (the embedded default backend)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mrl_keras.export.metadata import metadata_path
from mrl_keras.serving.backends.backend import (
    ModelBackend,
    ModelStatus,
    SignatureSpec,
    VersionStatus,
)
from mrl_keras.serving.backends.errors import InvalidInput, error_from_code
from mrl_keras.serving.backends.tf_serving_requests import signatures_from_signature_def_map

# numpy dtype name -> TF's DataTypeString, as it appears in TF's own error messages.
_TF_TYPE_NAME = {"float32": "float", "float64": "double", "float16": "half", "object": "string"}


def tf_type_name(dtype: str) -> str:
    return _TF_TYPE_NAME.get(dtype, dtype)


def list_versions(base_path: str) -> list[int]:
    """Integer-named version folders holding a `saved_model.pb`, ascending (others skipped)."""
    try:
        names = os.listdir(base_path)
    except FileNotFoundError:
        return []
    return sorted(
        int(n)
        for n in names
        if n.isdigit() and os.path.isfile(os.path.join(base_path, n, "saved_model.pb"))
    )


def resolve_version_dir(path: str, version: int | None = None) -> tuple[str, int]:
    """(version folder, version) for a base path (latest or `version`) or a version folder.

    Raises:
        FileNotFoundError: no SavedModel there, or not that version.
    """
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        name = os.path.basename(os.path.normpath(path))
        found = int(name) if name.isdigit() else 0
        if version is not None and version != found:
            raise FileNotFoundError(
                f"Expected version {version} but {path} is version {found}. Pass the base "
                "path (the folder holding the numbered versions) to choose a version."
            )
        return path, found
    versions = list_versions(path)
    if not versions:
        raise FileNotFoundError(
            f"Expected a SavedModel base path with integer version folders "
            f"(base/1/saved_model.pb, ...) or a version folder. Received: {path!r}, which has "
            "none. Export one with `mrl export`."
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise FileNotFoundError(
            f"Expected one of the versions {versions} in {path!r}. Received: version={version}"
        )
    return os.path.join(path, str(version)), version


def read_signature_defs(version_dir: str) -> dict[str, Any]:
    """The `serve` meta graph's SignatureDef map, read from `saved_model.pb` (no loading)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(
        f"Expected a meta graph tagged 'serve' in {version_dir}/saved_model.pb. Received tags: "
        f"{[list(m.meta_info_def.tags) for m in saved_model.meta_graphs]}"
    )


def check_inputs(signature: SignatureSpec, inputs: Mapping[str, np.ndarray]) -> None:
    """Checks request inputs against a signature with TF Serving's messages.

    Raises:
        InvalidInput: wrong input set (`input size does not match signature: ...`), a missing
            alias, a wrong dtype (`Expects arg[0] to be float but double is provided`) or a
            shape that contradicts the signature.
    """
    request_keys, signature_keys = sorted(inputs), sorted(signature.inputs)
    if len(request_keys) != len(signature_keys):
        extra = [k for k in request_keys if k not in signature.inputs]
        missing = [k for k in signature_keys if k not in inputs]
        raise InvalidInput(
            f"input size does not match signature: {len(request_keys)}!={len(signature_keys)} "
            f"len({{{','.join(request_keys)}}}) != len({{{','.join(signature_keys)}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: "
            f"{{{','.join(missing)}}}."
        )
    for i, name in enumerate(signature_keys):
        if name not in inputs:
            raise InvalidInput(f"Signature input alias: {name} not found in request")
        spec, value = signature.inputs[name], inputs[name]
        got = "string" if value.dtype.kind in ("S", "U", "O") else value.dtype.name
        if got != spec.dtype:
            raise InvalidInput(
                f"Expects arg[{i}] to be {tf_type_name(spec.dtype)} but {tf_type_name(got)} "
                "is provided"
            )
        if spec.shape is not None and (
            len(spec.shape) != value.ndim
            or any(
                want not in (-1, have) for want, have in zip(spec.shape, value.shape, strict=False)
            )
        ):
            want = ",".join("?" if d < 0 else str(d) for d in spec.shape)
            have = ",".join(str(d) for d in value.shape)
            raise InvalidInput(
                f"Incompatible shapes for input '{name}': the signature expects [{want}], "
                f"the request has [{have}]"
            )


def _tf_error(e: Exception):
    from tensorflow.core.protobuf import error_codes_pb2

    return error_from_code(error_codes_pb2.Code.Name(e.error_code), e.message)


class LocalModel(ModelBackend):
    """A Matryoshka SavedModel loaded with `tf.saved_model.load` and called in-process.

    The embedded default: no server, no network, the same results and errors as the TF
    Serving backends. Per-call `timeout` is accepted for interface parity and ignored (an
    in-process call cannot be abandoned half-way).

    Args:
        path: str. A base path holding integer version folders (`base/1/`, `base/2/`, ...) or
            one version folder.
        version: int or None. The version to load. Defaults to the latest.
        model_name: str or None. Reported name. Defaults to the base folder's name.
        required_signatures: iterable of str. Signatures checked at start-up (beyond one
            `embed_{m}`); a missing one raises `FailedPrecondition` with a clear message.

    Example:

    ```python
    backend = mrl_keras.serving.LocalModel("models/fashion_mnist")
    backend.info().exported_dims          # (8, 16, 32, 64)
    backend.embed(x, 24).embeddings.shape  # (n, 24)
    ```
    """

    def __init__(
        self,
        path: str,
        version: int | None = None,
        *,
        model_name: str | None = None,
        required_signatures: Iterable[str] = (),
    ):
        super().__init__(required_signatures)
        import tensorflow as tf

        self.path = os.fspath(path)
        self.version_dir, self.version = resolve_version_dir(self.path, version)
        if model_name is None:
            base = self.path if self.version_dir != self.path else os.path.dirname(self.path)
            model_name = os.path.basename(os.path.normpath(base)) or "model"
        self.model_name = model_name
        self.signature_defs = read_signature_defs(self.version_dir)
        self._specs = signatures_from_signature_def_map(self.signature_defs)
        self._loaded = tf.saved_model.load(self.version_dir)
        self._functions = dict(self._loaded.signatures)
        self.refresh()

    def _load_signatures(self) -> tuple[int, dict[str, SignatureSpec]]:
        return self.version, dict(self._specs)

    def run_signature(
        self, signature: str, inputs: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Calls one signature after checking `inputs` against it; returns numpy outputs."""
        import tensorflow as tf

        if self._loaded is None:
            raise error_from_code("FAILED_PRECONDITION", "LocalModel is closed.")
        spec = self._specs.get(signature)
        if spec is None:
            raise error_from_code(
                "FAILED_PRECONDITION", f'Serving signature key "{signature}" not found.'
            )
        check_inputs(spec, inputs)
        try:
            outputs = self._functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as e:
            raise _tf_error(e) from e
        except (TypeError, ValueError) as e:
            raise InvalidInput(str(e)) from e
        return {k: v.numpy() for k, v in outputs.items()}

    def _predict(self, signature, inputs, timeout):
        return self.run_signature(signature, inputs), self.version

    def _matryoshka_metadata(self) -> dict[str, Any] | None:
        path = metadata_path(self.version_dir)  # the metadata format lives in export
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    def pinned(self, version: int) -> LocalModel:
        """This model at `version`: itself, or that version folder of the same base path,
        loaded in-process (a pair of the search service pins it this way).

        Raises:
            NotFound: the base path holds no such version (or this is a single version folder).
        """
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
            raise ValueError(f"Expected a model version >= 1. Received: version={version!r}")
        if int(version) == self.version and self._loaded is not None:
            return self
        cache = self.__dict__.setdefault("_pinned_versions", {})
        model = cache.get(int(version))
        if model is not None and model._loaded is not None and os.path.isdir(model.version_dir):
            return model
        try:
            model = LocalModel(
                self.path,
                int(version),
                model_name=self.model_name,
                required_signatures=self._required,
            )
        except FileNotFoundError as e:
            raise error_from_code("NOT_FOUND", str(e)) from e
        cache[int(version)] = model
        while len(cache) > 2:  # the serving pair's and the next one's: older ones are dropped
            cache.pop(min(cache))
        return model

    def status(self) -> ModelStatus:
        state = "AVAILABLE" if self._loaded is not None else "END"
        return ModelStatus(
            version=self.version,
            state=state,
            versions=(VersionStatus(version=self.version, state=state),),
        )

    def close(self) -> None:
        self._loaded = None
        self._functions = {}
