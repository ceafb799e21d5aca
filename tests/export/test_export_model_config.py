"""export/model_config.py: the TF Serving model config file, checked against TF Serving's own
proto (`model_server_config_pb2`)."""

import pytest

from mrl_keras.export.model_config import model_config_text, write_model_config


def _parse(text):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_latest_policy_with_labels_parses_as_tf_serving_does(tmp_path):
    text = model_config_text("tiny", "/models/tiny", num_versions=2, labels={"stable": 1})
    config = _parse(text).model_config_list.config
    assert len(config) == 1
    model = config[0]
    assert (model.name, model.base_path, model.model_platform) == (
        "tiny",
        "/models/tiny",
        "tensorflow",
    )
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {"stable": 1}
    path = write_model_config(tmp_path / "models.config", text)
    assert open(path).read() == text and not list(tmp_path.glob(".*tmp*"))


def test_specific_policy_and_quoting():
    model = _parse(model_config_text('we"ird', "/m", versions=[3, 1])).model_config_list.config[0]
    assert model.name == 'we"ird'
    assert list(model.model_version_policy.specific.versions) == [1, 3]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": ""}, "model name"),
        ({"num_versions": 0}, "num_versions >= 1"),
        ({"versions": []}, "versions >= 0"),
        ({"labels": {"canary": 5}, "versions": [1]}, "does not serve"),
        ({"labels": {"": 1}}, "non-empty"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    args = {"name": "m", "base_path": "/m", **kwargs}
    with pytest.raises(ValueError, match=match):
        model_config_text(**args)


def test_write_needs_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_model_config(tmp_path / "no" / "models.config", "x")
