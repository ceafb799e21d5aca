"""Smoke test of benchmarks/chaos.py --quick on loopback: its correctness checks only (0 failed
requests across the rollovers on LocalModel, gRPC and REST; 0 mixed loads while builds run),
never timings."""

from benchmarks import chaos


def test_quick_run_passes_its_correctness_checks(tmp_path, capsys):
    # This module's scenarios (chaos_failures' have their own smoke test).
    rc = chaos.main(["--quick", "--only", "rollover,build_load_race", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| scenario | requests sent | failed by status |" in out
    for name in ("LocalModel", "gRPC (dev server)", "REST (dev server)", "build-vs-load race"):
        assert name in out
    assert rc == 0, out


def test_violations_are_found():
    rows = [
        chaos.row("rollover x", failed_by_status={"503": 2}, kind="rollover"),
        chaos.row("race", loads_mixed=1),
        chaos.row("other", ok=False, notes="did not finish"),
        chaos.row("fine", failed_by_status={"400": 3}),  # a bad-input scenario's expected 400s
    ]
    assert len(chaos.violations(rows)) == 3
    assert "fine" not in " ".join(chaos.violations(rows))


def test_failure_scenarios_are_discovered(monkeypatch, tmp_path):
    import sys
    import types

    module = types.ModuleType("benchmarks.chaos_failures")

    def scenario_fake(workdir, quick):
        return [chaos.row("fake", sent=3, failed_by_status={"400": 3}, notes="bad inputs")]

    module.scenario_fake = scenario_fake
    module.helper = lambda: None  # not a scenario
    monkeypatch.setitem(sys.modules, "benchmarks.chaos_failures", module)
    names = [name for name, _ in chaos.scenarios()]
    assert names[:3] == [
        "scenario_rollover_local",
        "scenario_rollover_grpc",
        "scenario_rollover_rest",
    ]
    assert "chaos_failures.scenario_fake" in names and "chaos_failures.helper" not in names
    assert chaos.main(["--quick", "--only", "fake", "--workdir", str(tmp_path)]) == 0
