"""serving/model_server/rest_api.py: TF Serving's REST routes (the server itself is exercised
by the conformance tests in tests/serving/backends)."""

from mrl_keras.serving.model_server.rest_api import PREDICTION_RE, STATUS_RE


def test_routes():
    assert PREDICTION_RE.fullmatch("/v1/models/m/versions/3:predict").groups() == (
        "m",
        "3",
        None,
        "predict",
    )
    assert PREDICTION_RE.fullmatch("/V1/MODELS/m/labels/stable:Predict").groups()[2] == "stable"
    assert STATUS_RE.fullmatch("/v1/models/m/versions/2/metadata").groups() == (
        "m",
        "2",
        None,
        "metadata",
    )
    assert STATUS_RE.fullmatch("/v1/models").groups()[0] is None
    assert PREDICTION_RE.fullmatch("/v1/models/m") is None
