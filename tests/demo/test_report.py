"""Tests for `mrl_keras.demo.report`: the report renders from a stored JSON fixture (the
`report.json` of a small real run, `mrl demo --full --quick`) to the same markdown every time."""

import json
import os
import re

import pytest

from mrl_keras.demo import figures
from mrl_keras.demo.claims import check_claims
from mrl_keras.demo.report import SECTIONS, render_markdown, summary_lines, write_report

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
FIXTURE = os.path.join(FIXTURES, "report_full_quick.json")
GOLDEN = os.path.join(FIXTURES, "report_full_quick.md")


@pytest.fixture
def results():
    with open(FIXTURE) as f:
        return json.load(f)


def test_markdown_matches_golden_file(results):
    with open(GOLDEN) as f:
        golden = f.read()
    assert render_markdown(results) == golden
    assert render_markdown(json.loads(json.dumps(results))) == golden


def test_every_section_is_rendered(results):
    text = render_markdown(results)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == list(SECTIONS)
    for key, (file, _) in figures.FIGURES.items():
        assert f"]({file})" in text, key


def test_fixture_holds_every_method_and_figure(results):
    assert {r["method"] for r in results["evaluation"]["rows"]} == {
        "MRL", "MRL-E", "FF", "SVD", "Random"
    }  # fmt: skip
    assert set(results["plots"]) == set(figures.FIGURES)
    assert results["status"] == "ok" and results["service"]["status"] == "ok"


def test_write_report_is_self_contained(results, tmp_path):
    paths = write_report(dict(results), str(tmp_path))
    for file, _ in figures.FIGURES.values():
        assert (tmp_path / file).stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(figures.FIGURES)
    assert not re.search(r'src="(?!data:)', html)
    with open(paths["markdown"]) as f, open(GOLDEN) as g:
        assert f.read() == g.read()
    with open(paths["json"]) as f:
        assert json.load(f)["evaluation"] == results["evaluation"]


def test_claims_are_computed_from_the_numbers(results):
    claims = {c["claim"]: c for c in check_claims(results)}
    ff = dict(figures.top1_series(results)["FF"])
    mrl = dict(figures.top1_series(results)["MRL"])
    key = next(k for k in claims if k.startswith("MRL >= FF"))
    for m in results["nesting_dims"]:
        assert f"{m}: {100 * (mrl[m] - ff[m]):+.2f}" in claims[key]["measured"]
    # verdicts come from a closed vocabulary ...
    allowed = re.compile(
        r"holds|partly|does not hold|within 1 point|holds at \d+/\d+( dims.*)?|holds, up to .+x"
        r"|holds of the dims <= \d+"
    )
    for claim in claims.values():
        assert allowed.fullmatch(claim["verdict"]), claim
    # ... and the fixture's numbers decide them: MRL beats FF at 8 dims only (+9.20, -0.40,
    # -4.80 points), MRL-E is within 1% of MRL at 16 and 32 dims.
    assert claims[key]["verdict"] == "holds at 1/3 dims (worst -4.80 points)"
    mrl_e = next(k for k in claims if k.startswith("MRL-E within 1% of MRL"))
    assert claims[mrl_e]["verdict"] == "holds"


def test_summary_lines_quote_the_json(results):
    text = "\n".join(summary_lines(results))
    test = results["cascade"]["test"]
    assert f"{100 * test['accuracy']:.2f}%" in text
    assert f"expected dim {test['expected_dim']:.1f}" in text
    assert results["paths"]["report"] in text
