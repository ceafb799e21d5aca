"""TF Serving model config files (`--model_config_file`, a `ModelServerConfig` text proto) for
the dev model server: the model's name, base path, platform, version policy and labels.

Parsed with `tensorflow_serving.config.model_server_config_pb2` and
`google.protobuf.text_format`, so a file stock TF Serving accepts is read the same way here
(`mrl export --write-model-config PATH` writes one). The dev server serves one model: a file
listing several is refused with a message naming them.
"""

from __future__ import annotations

import dataclasses
import os

__all__ = ["ModelConfig", "VersionPolicy", "aspired_versions", "read_model_config"]


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's `model_version_policy`: `kind` is "latest" (the newest `num_versions`),
    "specific" (exactly `versions`) or "all"."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in ("latest", "specific", "all"):
            raise ValueError(
                f"Expected a version policy kind among latest, specific, all. Received: "
                f"{self.kind!r}"
            )
        if self.kind == "latest" and self.num_versions < 1:
            raise ValueError(
                f"Expected num_versions >= 1 in a latest policy. Received: {self.num_versions}"
            )
        if self.kind == "specific" and (not self.versions or min(self.versions) < 0):
            raise ValueError(
                f"Expected a specific policy to list versions >= 0. Received: {self.versions}"
            )


def aspired_versions(policy: VersionPolicy, on_disk: list[int]) -> list[int]:
    """The versions (of those on disk, ascending) the policy wants served."""
    if policy.kind == "all":
        return list(on_disk)
    if policy.kind == "specific":
        return [v for v in on_disk if v in policy.versions]
    return list(on_disk[-policy.num_versions :])


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry of a model config file."""

    name: str
    base_path: str
    model_platform: str
    policy: VersionPolicy
    version_labels: dict[str, int]


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    """Reads the one model of a TF Serving model config file.

    Raises:
        ValueError: unreadable or malformed text proto, no model or several, a missing name
            or base path, a platform other than "tensorflow", or a label naming a version that
            a specific policy does not serve.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ValueError(f"Cannot read the model config file {path!r}: {e.strerror or e}") from e
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as e:
        raise ValueError(f"Malformed model config file {path!r}: {e}") from e
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(
            f"Expected a model_config_list in {path!r} (custom_model_config is not supported)."
        )
    models = list(config.model_config_list.config)
    if len(models) != 1:
        raise ValueError(
            f"Expected exactly one model in {path!r} (the dev server serves one). Received: "
            f"{[m.name for m in models] or 'none'}"
        )
    model = models[0]
    if not model.name or not model.base_path:
        raise ValueError(f"Expected a name and a base_path in {path!r}. Received: {model}")
    platform = model.model_platform or "tensorflow"
    if platform != "tensorflow":
        raise ValueError(
            f"Expected model_platform 'tensorflow' in {path!r}. Received: {platform!r}"
        )
    choice = model.model_version_policy.WhichOneof("policy_choice")
    if choice == "specific":
        policy = VersionPolicy(
            "specific", versions=tuple(sorted(model.model_version_policy.specific.versions))
        )
    elif choice == "all":
        policy = VersionPolicy("all")
    else:  # TF Serving's default: latest { num_versions: 1 }
        n = model.model_version_policy.latest.num_versions if choice == "latest" else 1
        policy = VersionPolicy("latest", num_versions=int(n) or 1)
    labels = {str(k): int(v) for k, v in model.version_labels.items()}
    if policy.kind == "specific":
        stray = {k: v for k, v in labels.items() if v not in policy.versions}
        if stray:
            raise ValueError(
                f"Version labels {stray} in {path!r} name versions the specific policy "
                f"{list(policy.versions)} does not serve."
            )
    # A relative base_path is relative to the server's working directory, as in TF Serving.
    return ModelConfig(model.name, model.base_path, platform, policy, labels)
