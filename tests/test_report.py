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


def test_a_fixed_grid_puts_the_panels_at_its_margins():
    """figure(grid=...) skips the tight layout (half a report's drawing time) and places panels by inches."""
    fig = report.figure(7.2, 3.0, grid=(1, 2), left=1.0)
    a, b = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    assert fig.get_layout_engine() is None
    (x0, y0), (x1, _), (x2, y3) = a.get_position().p0, a.get_position().p1, b.get_position().p1
    m = report.MARGINS
    assert x0 * 7.2 == pytest.approx(1.0) and y0 * 3.0 == pytest.approx(m["bottom"])
    assert (b.get_position().x0 - x1) * 7.2 == pytest.approx(m["wgap"])
    assert (1 - x2) * 7.2 == pytest.approx(m["right"]) and (1 - y3) * 3.0 == pytest.approx(m["top"])
    assert report.figure(4, 3).get_layout_engine() is not None  # labels of any length: the tight layout


def test_a_test_split_one_horizon_long_plots_its_whole_forecast_path(tmp_path):
    """With one test origin, the 1-step forecasts were a line through one point, which draws nothing: the plot
    shows that origin's forecasts over the whole horizon instead."""
    series = [10 + 0.1 * t + 3 * ((t % 12) < 6) for t in range(96)]
    cfg = {"name": "one", "task": "forecasting", "model": {"cell": "gru", "hidden_size": 4},
           "data": {"source": "array", "values": series, "lookback": 12, "horizon": 12, "val_fraction": 0.15,
                    "test_fraction": 0.125},
           "training": {"epochs": 1, "num_threads": 1, "device": "cpu"}}
    run, _ = fit(cfg, tmp_path / "run", quiet=True)
    from rnnkit.api import Run

    r = Run.load(run)
    state = r.task.state()
    r.task.setup()  # the configured series, split again
    r.task.load_state(state)
    test = r.task.splits["test"]
    assert len(test.origins) == 1
    _, pred, lo, hi = r.task._outputs(r.model, test, r.device, 12)
    lines = {ln.get_label(): ln for ln in r.task.forecast_figure(test, pred, lo, hi).axes[0].get_lines()}
    path = lines["test forecast, 1-12 ahead"]
    assert list(path.get_xdata()) == list(range(test.origins[0] + 1, test.origins[0] + 13))
    assert "<h2>Forecasts" in (run / "report.html").read_text()
