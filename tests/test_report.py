"""report.html: one self-contained file with plots inlined, and a plain version without matplotlib."""

from __future__ import annotations

import re

import pytest

import rnnkit.report as report
from rnnkit.build import fit

CFG = {"name": "rep", "model": {"cell": "rnn", "hidden_size": 8},
       "data": {"source": "embedded", "limit": 150, "test_fraction": 0.2},
       "training": {"epochs": 2, "batch_size": 32, "num_threads": 1, "device": "cpu"}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fit(CFG, tmp_path_factory.mktemp("rep") / "run", quiet=True, command="rnnkit train rep.yaml")[0]


def test_report_is_self_contained_with_sections(run_dir):
    page = (run_dir / "report.html").read_text()
    for title in ("Results", "Training curves", "Gradient norm", "Confusion matrix (test)", "Model and data",
                  "Timing", "Reproduce", "Config"):
        assert f"<h2>{title}" in page, title
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) >= 3
    assert not re.search(r'(src|href)="(http|/|\.)', page)  # nothing external
    assert "rnnkit train rep.yaml" in page


def test_extra_section_hook_and_no_matplotlib(run_dir, monkeypatch):
    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    extra = report.Section("Gradient through time", "<p>x</p>")
    monkeypatch.setattr(report, "SECTION_HOOKS", [lambda d, info: [extra]])
    page = report.write_report(run_dir).read_text()
    assert "matplotlib is not installed" in page and "data:image/png" not in page
    assert "<h2>Gradient through time</h2>" in page
