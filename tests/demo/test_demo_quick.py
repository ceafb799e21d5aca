"""`mrl demo --quick` end to end (CI-sized): it completes, and its report has every section and
every plot file, with numbers parsed back from the `report.json` it writes."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from mrl_keras.demo import figures
from mrl_keras.demo.report import SECTIONS

QUICK_BUDGET_S = 240  # ~90 s on an idle 2-core machine; headroom for a shared one


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_quick")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "mrl_keras.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    seconds = time.time() - t0
    return out, proc, seconds


def test_completes(quick_run):
    out, proc, seconds = quick_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seconds < QUICK_BUDGET_S
    for stage in ("data", "train", "evaluate", "calibrate", "export", "index", "retrieval",
                  "service", "report"):  # fmt: skip
        assert re.search(rf"\(\d+/\d+\) {stage}: done in", proc.stdout), stage
    assert "all stages ok" in proc.stdout


def test_report_has_every_section_and_plot(quick_run):
    out, proc, _ = quick_run
    report = out / "report"
    text = (report / "report.md").read_text()
    assert re.findall(r"^## (.+)$", text, flags=re.M) == list(SECTIONS)
    for file, _ in figures.FIGURES.values():
        assert (report / file).stat().st_size > 1000, file
        assert f"]({file})" in text
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures.FIGURES)


def test_numbers_parse_back_from_json(quick_run):
    out, proc, _ = quick_run
    results = json.loads((out / "report" / "report.json").read_text())
    assert results["status"] == "ok"
    dims = results["nesting_dims"]
    d = dims[-1]
    mrl = {r["dim"]: r for r in results["evaluation"]["rows"] if r["method"] == "MRL"}
    assert set(dims) <= set(mrl)
    for m in dims:
        for key in ("head_top1", "linear_probe_top1", "1nn_top1", "mAP@10"):
            assert 0.0 <= mrl[m][key] <= 1.0
    test = results["cascade"]["test"]
    assert dims[0] <= test["expected_dim"] <= d
    assert abs(test["accuracy"] - test["numpy_reference_accuracy"]) < 0.01
    retrieval = results["retrieval"]
    kinds = {r["kind"] for r in retrieval["single_shot"]}
    assert kinds == {"exact", "scann"}
    assert retrieval["ar"] and retrieval["funnel"]
    for row in retrieval["ar"] + retrieval["funnel"]:
        assert row["mflops_per_query"] < retrieval["d"] * retrieval["database"] / 1e6
    service = results["service"]
    assert service["status"] == "ok" and min(service["agreement"].values()) >= 0.95
    assert os.path.isdir(results["paths"]["saved_model"])
    assert os.path.exists(os.path.join(results["paths"]["index"], "manifest.json"))
    # the console summary quotes the JSON
    assert f"{100 * test['accuracy']:.2f}%" in proc.stdout
