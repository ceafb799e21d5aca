"""serving/retrieval/funnel.py: funnel stages, the paper's schedule and its cost."""

import pytest

from mrl_keras.serving.retrieval.funnel import (
    as_int,
    funnel_mflops,
    funnel_rerank_macs,
    paper_funnel,
    parse_funnel,
)


def test_paper_funnel():
    assert paper_funnel(16, 2048) == [(32, 100), (64, 50), (128, 25), (256, 10), (2048, 10)]


def test_paper_funnel_stops_halving_before_fewer_than_2k_survivors():
    assert paper_funnel(8, 64, shortlist=40, k=10) == [(16, 20), (32, 10), (64, 10)]
    assert paper_funnel(32, 64) == [(64, 10)]


def test_funnel_cost_is_the_shortlist_plus_each_stage_on_the_previous_survivors():
    stages = [(32, 100), (64, 10)]
    assert funnel_rerank_macs(200, stages) == 200 * 32 + 100 * 64
    assert funnel_mflops(1000, 16, 200, stages) == pytest.approx(
        (1000 * 16 + 200 * 32 + 100 * 64) / 1e6
    )


def test_funnel_parsing_forms():
    assert parse_funnel([[32, 100], {"dim": 64, "size": 10}]) == ((32, 100), (64, 10))
    with pytest.raises(ValueError, match="keys 'dim' and 'size'"):
        parse_funnel([{"dim": 32}])
    with pytest.raises(TypeError, match="int funnel size"):
        parse_funnel([[32, "10"]])


@pytest.mark.parametrize("value", [True, 2.0, "3", None])
def test_as_int_refuses_non_ints(value):
    with pytest.raises(TypeError, match="Expected an int k"):
        as_int("k", value)
