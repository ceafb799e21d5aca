"""training/train_config.py: validation, the JSON round trip and the run key."""

import json

import pytest

from mrl_keras.training.train_config import RESTART_FIELDS, TrainConfig


def test_round_trip_through_json(tmp_path):
    config = TrainConfig(dataset="cjk", mode="mrl-e", dims=[8, 16], warmup_epochs=0.5, width=16)
    assert config.dims == (8, 16)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    loaded = TrainConfig.load(str(path))
    assert loaded == TrainConfig(**{**config.to_dict(), "dims": (8, 16)})
    assert loaded.backbone_options() == {"width": 16}
    assert loaded.cjk_options()["num_classes"] == 1000


def test_run_key_ignores_only_the_restart_fields():
    a = TrainConfig(out="runs/a", verbose=0, fresh=True)
    b = TrainConfig(out="runs/b", verbose=2, fresh=False)
    assert a.run_key() == b.run_key()
    assert not set(RESTART_FIELDS) & set(a.run_key())
    assert TrainConfig(epochs=6).run_key() != TrainConfig(epochs=5).run_key()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "positive int epochs. Received: epochs=0"),
        ({"batch_size": True}, "positive int batch_size. Received: batch_size=True"),
        ({"epochs": 2.5}, "positive int epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs >= 0"),
        ({"warmup_epochs": "1"}, "warmup_epochs >= 0"),
        ({"mode": "mrl_e"}, "Unknown mode 'mrl_e'"),
        ({"trainable_layers": 3}, "--trainable-layers needs --init-from"),
    ],
)
def test_bad_values_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_unknown_keys_in_a_saved_config_are_refused():
    with pytest.raises(ValueError, match=r"Unknown training config keys \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
