"""Diagnostics: the traced forward is the layer's function, dL/dh_t is the true total derivative, the
verdict reads the ratio right, gates and the callback/report plumbing work."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkit
from rnnkit.build import fit
from rnnkit.cli import main
from rnnkit.diagnostics import gate_statistics, gradient_through_time, trace
from rnnkit.diagnostics.runs import GradThroughTime, GradThroughTimeOptions, report_sections
from rnnkit.diagnostics.through_time import tracing
from rnnkit.training.callbacks import Context

LAYERS = [
    (rnnkit.LSTM, {}),
    (rnnkit.GRU, {"reset_after": False}),
    (rnnkit.RNN, {"activation": "relu"}),
    (rnnkit.LSTM, {"bidirectional": True, "num_layers": 2, "layer_norm": True}),
]


@pytest.mark.parametrize("cls,kw", LAYERS)
@pytest.mark.parametrize("ragged", [False, True])
def test_traced_forward_equals_layer(cls, kw, ragged):
    torch.manual_seed(0)
    layer = cls(3, 5, **kw).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 5, 1]) if ragged else None
    ref_out, ref_state = layer(x, lengths=lengths)
    with tracing(layer) as traces:
        out, state = layer(x, lengths=lengths)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(ref_state if isinstance(ref_state, tuple) else (ref_state,),
                    state if isinstance(state, tuple) else (state,), strict=True):
        torch.testing.assert_close(a, b)
    assert len(traces) == layer.num_layers * layer.num_directions
    assert "forward" not in vars(layer)  # the class forward is back


def test_grad_is_the_total_derivative():
    """Against an independent hand-written tanh recurrence where every h_t keeps its gradient."""
    torch.manual_seed(1)
    layer = rnnkit.RNN(2, 4).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    target = torch.randn(3, 6, 4, dtype=torch.float64)

    def loss_fn(m):  # depends on h_t directly at every step and through the final state
        out, h = m(x)
        return ((out - target) ** 2).sum() + (h**3).sum()

    g = gradient_through_time(layer, loss_fn)
    w_ih, w_hh, b_ih, b_hh = (getattr(layer, n).detach().requires_grad_() for n in (
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    h, hs = torch.zeros(3, 4, dtype=torch.float64), []
    for t in range(6):
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        h.retain_grad()
        hs.append(h)
    out = torch.stack(hs, 1)
    (((out - target) ** 2).sum() + (hs[-1] ** 3).sum()).backward()
    want = torch.stack([h.grad for h in hs], 1)
    torch.testing.assert_close(g.layers[0].grad, want)
    torch.testing.assert_close(torch.as_tensor(g.layers[0].norms), want.norm(dim=2).mean(0))


def test_reverse_direction_in_time_order():
    torch.manual_seed(2)
    layer = rnnkit.RNN(2, 3, bidirectional=True).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    g = gradient_through_time(layer, lambda m: m(x)[0][:, 0, 3:].sum())  # reverse direction's output at t = 0
    rev = g.layers[1]
    assert rev.reverse and rev.name == "layer 0 reverse"
    n = rev.norms
    assert n[0] > 0 and n[-1] > 0 and g.layers[0].norms.sum() == 0  # the forward direction gets nothing
    assert rev.ratio == pytest.approx(n[-1] / n[0])  # the reverse reads from t = T-1 to t = 0


def test_param_grads_untouched_and_mode_restored():
    torch.manual_seed(3)
    layer = rnnkit.LSTM(2, 4)
    x = torch.randn(3, 5, 2)
    layer(x)[0].sum().backward()
    before = [p.grad.clone() for p in layer.parameters()]
    layer.train()
    gradient_through_time(layer, lambda m: m(x)[0].pow(2).sum())
    assert layer.training
    for a, p in zip(before, layer.parameters(), strict=True):
        assert torch.equal(a, p.grad)


def _linear_rnn(scale: float) -> rnnkit.RNN:
    layer = rnnkit.RNN(1, 3, activation="identity")
    with torch.no_grad():
        layer.weight_hh_l0.copy_(scale * torch.eye(3))
    return layer


@pytest.mark.parametrize("scale,status", [(0.5, "vanishing"), (1.0, "healthy"), (1.6, "exploding")])
def test_verdict(scale, status):
    x = torch.randn(2, 30, 1)
    g = gradient_through_time(_linear_rnn(scale), lambda m: m(x)[1].sum())  # loss on the final state only
    t = g.layers[0]
    assert t.status == status and g.status == status
    assert t.per_step == pytest.approx(scale, rel=1e-6)  # dL/dh_t = W^(T-t) dL/dh_T exactly
    assert g.verdict.startswith(f"{status}: layer 0 (rnn): |dL/dh| at the first step is")


def test_float64_keeps_tiny_gradients():
    x = torch.randn(2, 200, 1)
    layer = _linear_rnn(0.5)  # 0.5^199 ~ 1e-60: zero in float32
    assert trace(layer, lambda m: m(x)[1].sum(), float64=False).layers[0].ratio == 0.0
    g = trace(layer, lambda m: m(x)[1].sum())
    assert g.layers[0].ratio == pytest.approx(0.5**199, rel=1e-6)
    assert next(layer.parameters()).dtype == torch.float32  # the model itself is not converted


def test_gate_statistics_lstm_and_gru():
    torch.manual_seed(4)
    lstm = rnnkit.LSTM(2, 4)
    with torch.no_grad():
        lstm.bias_ih_l0[4:8] = 30.0  # forget gate pinned open
        lstm.bias_ih_l0[:4] = -30.0  # input gate pinned shut
    x = torch.randn(3, 6, 2)
    g = trace(lstm, lambda m: m(x)[0].sum(), grad=False)
    stats = {r["gate"]: r for r in gate_statistics(g.layers)}
    assert set(stats) == {"input", "forget", "output"}
    assert stats["forget"]["above"] == 1.0 and stats["forget"]["saturated"] == 1.0
    assert stats["input"]["below"] == 1.0
    assert 0.0 < stats["output"]["mean"] < 1.0
    gru = rnnkit.GRU(2, 4)
    g = trace(gru, lambda m: m(x)[0].sum(), grad=False)
    assert [r["gate"] for r in gate_statistics(g.layers)] == ["reset", "update"]
    # the recomputed update gate is the one the layer used: h_1 = (1 - z) n from h_0 = 0
    w_ih, b_ih, b_hh = gru.weight_ih_l0.detach(), gru.bias_ih_l0.detach(), gru.bias_hh_l0.detach()
    z = torch.sigmoid(x[:, 0] @ w_ih[4:8].T + b_ih[4:8] + b_hh[4:8])
    torch.testing.assert_close(g.layers[0].gates["update"][:, 0], z)


TINY = {
    "name": "tiny-adding", "task": "adding",
    "model": {"cell": "lstm", "hidden_size": 6},
    "data": {"num_steps": 8, "train_size": 64, "val_size": 32, "test_size": 32},
    "training": {"epochs": 2, "batch_size": 16, "lr": 0.01, "num_threads": 1, "device": "cpu"},
    "callbacks": {"grad_through_time": {"every": 3}},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir, _ = fit(TINY, tmp_path_factory.mktemp("d") / "run", quiet=True)
    return run_dir


def test_callback_records_and_report(tiny_run):
    lines = [json.loads(s) for s in (tiny_run / "diagnostics" / "grad_through_time.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 3, 6]  # 8 steps in all
    assert len(lines[0]["layers"]["layer 0"]["norms"]) == 8
    final = json.loads((tiny_run / "diagnostics" / "final.json").read_text())
    assert final["split"] == "val" and final["status"] in ("healthy", "vanishing", "exploding")
    page = (tiny_run / "report.html").read_text()
    for title in ("Gradient through time", "Gate statistics", "Hidden states"):
        assert f"<h2>{title}</h2>" in page
    assert "recorded during training" in page.lower()


def test_callback_resume_drops_later_records(tmp_path):
    folder = tmp_path / "diagnostics"
    folder.mkdir()
    (folder / "grad_through_time.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (0, 5, 10)))
    cb = GradThroughTime(GradThroughTimeOptions(every=5))
    cb.load_state({"last_step": 5})
    cb.on_train_start(Context(tmp_path, None, None, None, None))
    assert [json.loads(s)["step"] for s in (folder / "grad_through_time.jsonl").read_text().splitlines()] == [0, 5]


def test_report_section_never_raises(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (sec,) = report_sections(tmp_path, {})
    assert sec.title == "Gradient through time" and "not computed" in sec.html
    assert report_sections(tmp_path / "nothing", {}) == []


def test_cli_diagnose(tiny_run, tmp_path, capsys):
    assert main(["diagnose", str(tiny_run), "--json", "--batch-size", "4", "--plot", str(tmp_path / "g.png")]) == 0
    rec = json.loads(capsys.readouterr().out.splitlines()[0])
    assert rec["split"] == "val" and len(rec["layers"][0]["norms"]) == 8
    assert (tmp_path / "g.png").stat().st_size > 1000
    assert main(["diagnose", str(tmp_path / "missing")]) == 2
    assert "rnnkit: error:" in capsys.readouterr().err
    bad = {**TINY, "callbacks": {"grad_through_time": {"every": 0}}}
    with pytest.raises(ValueError, match="every must be >= 1"):
        fit(bad, tmp_path / "bad", quiet=True)
    assert not (tmp_path / "bad").exists()


def test_callback_keeps_a_stateful_tasks_carry(tmp_path):
    class Stateful:  # a truncated-BPTT task moves its carried state in step()
        carry = torch.ones(1, 2, 3)

        def step(self, model, batch, device):
            out, self.carry = model(batch, self.carry)
            from rnnkit.tasks.base import StepResult

            return StepResult(out.sum(), 2)

        def carry_tensors(self):
            return {"h": self.carry}

        def load_carry(self, tensors):
            self.carry = tensors["h"]

    task, layer = Stateful(), rnnkit.GRU(1, 3)
    cb = GradThroughTime(GradThroughTimeOptions(every=1))
    cb.after_backward(Context(tmp_path, layer, task, torch.device("cpu"), None), torch.randn(2, 4, 1))
    assert torch.equal(task.carry, torch.ones(1, 2, 3))
    rec = json.loads((tmp_path / "diagnostics" / "grad_through_time.jsonl").read_text())
    assert rec["step"] == 0 and len(rec["layers"]["layer 0"]["norms"]) == 4


def test_exact_zeros_before_any_input_are_not_a_vanishing_gradient():
    import torch

    from rnnkit.diagnostics.through_time import Trace

    g = torch.ones(2, 6, 3)
    g[:, :2] = 0.0  # no path to the loss from the first two steps (relu off), then a steady gradient
    t = Trace("layer 0", "indrnn", False, torch.zeros(2, 6, 3), grad=g)
    assert t.ratio == 0.0 and t.zero_lead == 2 and t.tail_ratio == 1.0 and t.status == "healthy"
    g[:, 2:5] = 1e-9  # and a gradient that does decay is still called so
    assert Trace("layer 0", "rnn", False, torch.zeros(2, 6, 3), grad=g).status == "vanishing"


def test_diagonal_cells_record_their_retention():
    import torch

    from rnnkit.diagnostics.through_time import gate_statistics, trace
    from rnnkit.layers import IndRNN, MinGRU

    for layer in (MinGRU(2, 4), IndRNN(2, 4)):
        x = torch.randn(3, 7, 2)
        g = trace(layer, lambda m, x=x: m(x)[0].sum())
        rows = {r["gate"]: r for r in gate_statistics(g.layers)}
        assert "retention" in rows and 0.0 <= rows["retention"]["mean"] <= 1.0 + 1e-6
        if isinstance(layer, MinGRU):  # 1 - z
            z = torch.sigmoid(torch.nn.functional.linear(x, layer.weight_ih_l0, layer.bias_ih_l0)[..., :4])
            torch.testing.assert_close(g.layers[0].gates["retention"], 1 - z)


def test_retention_does_not_hang_on_the_traced_graph():
    # a retention computed on the traced graph of every earlier step made the trace quadratic in T
    import torch

    from rnnkit.layers import IndRNN

    layer = IndRNN(2, 3).double()
    h = torch.randn(4, 3, dtype=torch.float64, requires_grad=True) * 2
    gx = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    params = {"weight_hh": layer.weight_hh_l0, "bias_hh": layer.bias_hh_l0}
    with torch.no_grad():
        r = layer.cell.retention(gx, h, params)
    assert r.grad_fn is None and not r.requires_grad
    want = layer.cell.bounded(params).abs() * ((gx + layer.cell.bounded(params) * h + layer.bias_hh_l0) > 0)
    torch.testing.assert_close(r, want.detach().to(r.dtype))


def test_a_layer_run_twice_in_one_forward_gets_one_trace_name_per_call():
    """A language model runs its layer once per segment between document resets: the two traces of one layer
    were both called 'layer 0' in the report's table, legend and hidden-state panels."""
    torch.manual_seed(0)
    layer = rnnkit.GRU(3, 4, bidirectional=True)
    x = torch.randn(2, 6, 3)

    def two_segments(m):
        out, h = m(x[:, :4])
        return m(x[:, 4:], h)[0].sum() + out.sum()

    names = [t.name for t in trace(layer, two_segments).layers]
    assert names == ["layer 0", "layer 0 reverse", "layer 0 (call 2)", "layer 0 reverse (call 2)"]
