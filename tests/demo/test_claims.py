"""demo/claims.py: each verdict follows from the numbers it is given (holds / does not hold)."""

import pytest

from mrl_keras.demo.claims import check_claims


def _results(mrl, ff, mrl_e=None, cascade=None):
    rows = []
    for method, values in (("MRL", mrl), ("FF", ff), ("MRL-E", mrl_e or {})):
        for dim, v in values.items():
            rows.append({"method": method, "dim": dim, "head_top1": v, "1nn_top1": v})
    return {"nesting_dims": [8, 16, 32], "evaluation": {"rows": rows}, "cascade": cascade}


def _claim(claims, prefix):
    (found,) = [c for c in claims if c["claim"].startswith(prefix)]
    return found


def test_mrl_vs_ff_holds_only_when_every_dim_holds():
    ok = check_claims(_results({8: 0.8, 16: 0.85, 32: 0.9}, {8: 0.7, 16: 0.85, 32: 0.89}))
    assert _claim(ok, "MRL >= FF at every nesting dim")["verdict"] == "holds"
    bad = check_claims(_results({8: 0.6, 16: 0.85, 32: 0.9}, {8: 0.7, 16: 0.8, 32: 0.89}))
    claim = _claim(bad, "MRL >= FF at every nesting dim")
    assert claim["verdict"] == "holds at 2/3 dims (worst -10.00 points)"
    assert "8: -10.00" in claim["measured"]


def test_mrl_e_within_one_point_from_16_dims():
    mrl = {8: 0.8, 16: 0.85, 32: 0.9}
    claims = check_claims(_results(mrl, {}, mrl_e={8: 0.5, 16: 0.845, 32: 0.88}))
    assert _claim(claims, "MRL-E within 1%")["verdict"] == "holds at 1/2 dims"


@pytest.mark.parametrize(
    "accuracy, expected_dim, verdict",
    [(0.895, 12.0, "holds"), (0.87, 12.0, "does not hold"), (0.9, 32.0, "does not hold")],
)
def test_cascade_verdict_needs_accuracy_within_a_point_and_fewer_dims(
    accuracy, expected_dim, verdict
):
    cascade = {
        "test": {"accuracy": accuracy, "expected_dim": expected_dim, "full_dim_accuracy": 0.9},
        "curve": [],
    }
    claims = check_claims(_results({8: 0.8, 16: 0.85, 32: 0.9}, {}, cascade=cascade))
    assert _claim(claims, "Cascade (MRL-AC)")["verdict"] == verdict


def test_no_data_no_claims():
    assert check_claims({"nesting_dims": [8], "evaluation": {"rows": []}}) == []
