"""benchmarks/chaos_failures.py: its scenarios are found by benchmarks/chaos.py (whose quick
run, tests/benchmarks/test_chaos.py, runs them all), and one of them, run here on loopback,
returns rows of the table's keys with its correctness target met (every hostile body a 400)."""

import pytest

from benchmarks import chaos, chaos_failures


def test_scenarios_are_discovered_by_the_chaos_program():
    names = {name for name, _ in chaos.scenarios()}
    for wanted in (
        "kill_model_server_grpc",
        "kill_model_server_rest",
        "reload_storm",
        "bit_flip",
        "nested_json",
        "client_disconnect",
    ):
        assert f"chaos_failures.scenario_{wanted}" in names


@pytest.mark.slow  # exports a model and starts a dev server; test_chaos.py's quick run covers it
def test_nested_json_scenario_gets_400_everywhere(tmp_path):
    rows = chaos_failures.scenario_nested_json(tmp_path, True)
    assert len(rows) == 1 and set(chaos.KEYS) <= set(rows[0])
    assert rows[0]["ok"] is True, rows[0]
    assert set(rows[0]["failed_by_status"]) == {"400"} and rows[0]["sent"] == 16
    assert chaos.violations(rows) == []
