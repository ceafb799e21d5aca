"""benchmarks/chaos_failures.py: its scenarios are found by benchmarks/chaos.py, its `--quick`
form (the CI smoke run, in a process of its own) meets every correctness target, and one
scenario, called here, returns rows of the table's keys (every hostile body a 400)."""

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


def test_quick_run_meets_every_correctness_target(tmp_path):
    """The CI smoke form, as a user runs it (its own process: the scenarios start servers and
    child processes and watch the log): every scenario finishes with its correctness target met
    (every failure a 503, recovery, at most one reload at a time, the bit flip detected, every
    hostile body a 400, disconnects counted as 499) or the program exits 1 naming it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.chaos_failures", "--quick", "--workdir", str(tmp_path)],
        cwd=root,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for wanted in ("bit flip", "client disconnect", "dev server + restart", "JSON nested",
                   "reload storm: searches during,"):  # fmt: skip
        assert any(wanted in line for line in table), (wanted, table)
    assert not any("did not finish" in line for line in table), table
