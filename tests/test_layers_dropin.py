"""rnnkit layers as torch.nn drop-ins: the call convention, PackedSequence and unbatched inputs, proj_size,
merge_mode, the public engine choice, the cell registry and the layers' import structure."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.layers import CELLS, ENGINES, make_layer, native

TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
OWN = ["native", "scan", "autograd"] if native.available() else ["scan", "autograd"]
SRC = Path(rnnkit.__file__).parent


def _states(s):
    return s if isinstance(s, tuple) else (s,)


def _close(a, b, tol=1e-5):
    for u, v in zip(_states(a), _states(b), strict=True):
        torch.testing.assert_close(u, v, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------- the call convention
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_hx_positional_packed_and_unbatched_equal_torch_nn(cell, num_layers, bidirectional, batch_first):
    torch.manual_seed(0)
    ref = TORCH[cell](5, 4, num_layers, bidirectional=bidirectional, batch_first=batch_first)
    layer = CELLS[cell].from_torch(ref)
    dirs = 2 if bidirectional else 1
    h0 = torch.randn(num_layers * dirs, 3, 4)
    hx = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    x = torch.randn(3, 6, 5) if batch_first else torch.randn(6, 3, 5)
    _close(layer(x, hx), ref(x, hx))  # hx positional, as every PyTorch user writes it
    _close(layer(x), ref(x))
    # a PackedSequence, sorted or not, gives a PackedSequence with the same data and order
    lengths = torch.tensor([6, 2, 4])
    for enforce in (False, True):
        lens = lengths.sort(descending=True).values if enforce else lengths
        packed = pack_padded_sequence(x, lens, batch_first=batch_first, enforce_sorted=enforce)
        out, h = layer(packed, hx)
        out_ref, h_ref = ref(packed, hx)
        assert isinstance(out, nn.utils.rnn.PackedSequence)
        _close(out.data, out_ref.data)
        assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
        for a, b in ((out.sorted_indices, out_ref.sorted_indices), (out.unsorted_indices, out_ref.unsorted_indices)):
            assert (a is None and b is None) or torch.equal(a, b)
        _close(h, h_ref)
        # ... and equals the padded call with lengths=
        padded, _ = pad_packed_sequence(out, batch_first=batch_first)
        out_l, h_l = layer(pad_packed_sequence(packed, batch_first=batch_first)[0], hx, lengths=lens)
        _close(padded, out_l[:padded.shape[0]] if not batch_first else out_l[:, :padded.shape[1]])
        _close(h_l, h)
    # unbatched (T, D) in, unbatched out and state, as torch.nn
    xu = torch.randn(6, 5)
    hu = tuple(s[:, 0] for s in _states(hx))
    hu = hu if cell == "lstm" else hu[0]
    out_u, h_u = layer(xu, hu)
    out_r, h_r = ref(xu, hu)
    assert out_u.shape == out_r.shape == (6, dirs * 4)
    _close(out_u, out_r)
    _close(h_u, h_r)


def test_call_mistakes_say_what_to_do():
    layer = rnnkit.GRU(3, 4)
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="pass sequence lengths as lengths="):
        layer(x, [5, 3])
    with pytest.raises(TypeError):
        layer(x, None, torch.tensor([5, 3]))  # lengths is keyword-only
    with pytest.raises(ValueError, match="carries its own lengths"):
        layer(pack_padded_sequence(x, [5, 3], batch_first=True), lengths=[5, 3])
    with pytest.raises(ValueError, match="needs a batched input"):
        layer(torch.randn(5, 3), lengths=[5])
    with pytest.raises(ValueError, match=r"hx h0 of shape \(1, 4\)"):
        layer(torch.randn(5, 3), torch.zeros(1, 2, 4))


# ----------------------------------------------------------------------------- proj_size
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_proj_size_equals_torch_nn(num_layers, bidirectional):
    torch.manual_seed(1)
    ref = nn.LSTM(5, 6, num_layers, bidirectional=bidirectional, proj_size=3, batch_first=True)
    layer = rnnkit.LSTM.from_torch(ref)
    assert [n for n, _ in layer.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert layer.weight_hr_l0.shape == (3, 6) and layer.proj_size == 3
    dirs = 2 if bidirectional else 1
    h0, c0 = torch.randn(num_layers * dirs, 4, 3), torch.randn(num_layers * dirs, 4, 6)
    x = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 3, 1, 5])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out_ref, st_ref = ref(packed, (h0, c0))
    out_ref = pad_packed_sequence(out_ref, batch_first=True, total_length=7)[0]
    for engine in ("fused", "autograd"):
        layer.engine = engine
        xl = x.clone().requires_grad_()
        out, st = layer(xl, (h0, c0), lengths=lengths)
        assert out.shape == (4, 7, dirs * 3) and st[0].shape == h0.shape and st[1].shape == c0.shape
        _close(out, out_ref)
        _close(st, st_ref)
        out.sum().backward()
        assert xl.grad is not None and layer.weight_hr_l0.grad is not None
        layer.zero_grad()
    for engine in ("native", "scan"):  # no hand-written BPTT for the projection: a documented engine choice
        with pytest.raises(ValueError, match="without proj_size"):
            layer.engine = engine
    layer.engine = "auto"
    back = layer.to_torch()
    assert back.proj_size == 3
    _close(back(x)[0], ref(x)[0])
    custom = rnnkit.LSTM(5, 6, proj_size=2, activation="relu")
    assert custom.engine == "autograd"
    assert custom(x)[0].shape == (4, 7, 2)
    with pytest.raises(ValueError, match="proj_size must be"):
        rnnkit.LSTM(5, 6, proj_size=6)


# ----------------------------------------------------------------------------- merge_mode
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["sum", "mul", "ave", None])
def test_merge_modes(cell, mode):
    torch.manual_seed(2)
    base = make_layer(cell, 3, 4, bidirectional=True)
    layer = make_layer(cell, 3, 4, bidirectional=True, merge_mode=mode)
    layer.load_state_dict(base.state_dict())
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 2])
    cat, h = base(x, lengths=lengths)
    fw, bw = cat[..., :4], cat[..., 4:]
    want = {"sum": fw + bw, "mul": fw * bw, "ave": (fw + bw) / 2, None: (fw, bw)}[mode]
    for engine in ("fused", *OWN):
        layer.engine = engine
        out, h2 = layer(x, lengths=lengths)
        _close(out, want, 1e-6)
        _close(h2, h, 1e-6)
    assert layer.output_size == (8 if mode == "concat" else 4)
    with pytest.raises(ValueError, match="concatenates the two directions"):
        layer.to_torch()


def test_stacked_merge_mode_reads_merged_features():
    layer = rnnkit.LSTM(3, 4, 2, bidirectional=True, merge_mode="sum")
    assert layer.weight_ih_l1.shape == (16, 4)  # layer 1 reads the sum: H features, as stacked Keras layers do
    assert layer.engine == ("native" if native.available() else "scan")  # torch's kernel concatenates
    with pytest.raises(ValueError, match="concatenate the directions between stacked layers"):
        layer.engine = "fused"
    rng = np.random.default_rng(3)
    weights = []
    for d_in in (3, 3, 4, 4):  # layer 0 fw, bw; layer 1 fw, bw (its kernel reads H = 4)
        weights += [rng.normal(size=(d_in, 16)), rng.normal(size=(4, 16)), rng.normal(size=(16,))]
    layer.double().load_keras_weights(weights)
    with pytest.raises(ValueError, match="set merge_mode"):
        rnnkit.LSTM(3, 4, 2, bidirectional=True).load_keras_weights(weights)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    one = rnnkit.LSTM(3, 4, bidirectional=True, merge_mode="sum").double().load_keras_weights(weights[:6])
    two = rnnkit.LSTM(4, 4, bidirectional=True, merge_mode="sum").double().load_keras_weights(weights[6:])
    torch.testing.assert_close(layer(x)[0], two(one(x)[0])[0])


# ----------------------------------------------------------------------------- the engine choice
def test_engine_choice_is_public_validated_and_never_compiles(monkeypatch):
    layer = rnnkit.LSTM(3, 4, activation="relu")
    with pytest.raises(ValueError, match="engine='fused' cannot run LSTM.*no fused kernel"):
        layer.engine = "fused"
    with pytest.raises(ValueError, match="engine='fused' cannot run.*layer norm"):
        rnnkit.GRU(3, 4, layer_norm=True, engine="fused")
    with pytest.raises(ValueError, match="engine must be one of"):
        rnnkit.RNN(3, 4, engine="cudnn")
    assert rnnkit.GRU(3, 4, engine="autograd").engine == "autograd"
    assert rnnkit.GRU(3, 4, engine="scan").requested_engine == "scan"
    assert "engine='scan'" in repr(rnnkit.GRU(3, 4, engine="scan"))
    x = torch.randn(2, 5, 3)
    half = rnnkit.GRU(3, 4, engine="native", dtype=torch.float16)
    with pytest.raises(ValueError, match="float32/float64 on the CPU"):
        half(x.half())

    def no_build():
        raise AssertionError("asking about engines must not compile")

    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", no_build)
    monkeypatch.setattr(native, "_compiler", lambda: "/usr/bin/c++")
    monkeypatch.setattr(native, "_ninja_on_path", lambda: True)
    monkeypatch.setattr(native, "build_dir", lambda: Path("/nonexistent/rnnkit_native_x"))
    g = rnnkit.GRU(3, 4)
    assert g.engine == "native" and native.available()
    g.engine = "native"
    assert g.engine == "native" and "ok" not in native._state  # nothing built yet
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert "no C++ compiler" in native.why_unavailable()
    assert rnnkit.GRU(3, 4).engine == "fused"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_gives_the_same_function(engine):
    torch.manual_seed(4)
    layer = rnnkit.GRU(3, 5, 2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 4])
    layer.engine = "autograd"
    want = layer(x, lengths=lengths)
    if layer._why_not(engine) is not None:
        pytest.skip(layer._why_not(engine))
    layer.engine = engine
    _close(layer(x, lengths=lengths), want, 1e-10)


# ----------------------------------------------------------------------------- the registry
def test_registry_is_what_config_and_factory_read():
    assert {"rnn", "lstm", "gru"} <= set(CELLS)
    for name, cls in CELLS.items():
        assert cls.cell_class.name == name
        layer = make_layer(name, 2, 3)
        assert isinstance(layer, cls)
        assert set(layer.cell.sigmoid_gates) <= set(layer.cell.gate_names)
        assert len(layer.cell.gate_names) == layer.cell.num_gates
    from rnnkit.config import ConfigError, ModelConfig

    with pytest.raises(ConfigError, match="did you mean 'gru'"):
        ModelConfig(cell="gur").check()
    with pytest.raises(ConfigError, match="reset_after only applies to cell: gru"):
        ModelConfig(cell="lstm", reset_after=False).check()
    with pytest.raises(ConfigError, match="recurrent_activation only applies to cell: gru, lstm"):
        ModelConfig(cell="rnn", recurrent_activation="sigmoid").check()
    ModelConfig(cell="rnn", activation="hard_sigmoid").check()  # every activation the layer takes
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        make_layer("elman", 2, 3)


# ----------------------------------------------------------------------------- import structure
def _imports(path: Path) -> set[str]:
    """The rnnkit modules a file imports (absolute names), from its syntax tree."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("rnnkit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rnnkit"):
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _module_graph(folder: Path, package: str) -> dict[str, set[str]]:
    mods = {package + ("" if p.stem == "__init__" else "." + p.stem): p for p in folder.glob("*.py")}
    return {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def test_layers_have_no_import_cycles_and_import_nothing_above():
    graph = _module_graph(SRC / "layers", "rnnkit.layers")
    graph.pop("rnnkit.layers")  # the package's __init__ re-exports its modules
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            if n == "rnnkit.layers":
                continue
            assert state.get(n) != 1, f"import cycle: {' -> '.join([*path, m, n])}"
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    for p in (SRC / "layers").glob("*.py"):
        outside = {i for i in _imports(p) if not i.startswith("rnnkit.layers")}
        assert not outside, f"{p.name} imports {outside}: layers/ must not import anything above it"
    for p in (SRC / "reference").glob("*.py"):
        assert all(i.startswith("rnnkit.reference") for i in _imports(p)), p.name
