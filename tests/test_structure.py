"""The package's layering, read from its source: no import cycles, lower layers import nothing above them, and
the trainer trains any Data and Objective (a boring fake one here, as Lightning tests with a boring model)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.config import TrainingConfig
from rnnkit.training import Data, Objective, StepResult, Trainer

SRC = Path(rnnkit.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the rnnkit modules it imports anywhere in its body (functions included)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in files:
                    n = n.rpartition(".")[0]
                if n and n.startswith("rnnkit") and n != mod:
                    deps.add(n)
        graph[mod] = deps
    return graph


def _layer(mod: str) -> str:
    layer = mod.split(".")[1] if mod.count(".") else "rnnkit"
    return "errors" if layer == "_version" else layer  # the version is a leaf like the errors


def test_no_import_cycles_between_modules():
    graph = _graph()
    packages = {m for m in graph if (SRC.parent / m.replace(".", "/") / "__init__.py").exists()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if n in packages and m.startswith(n + "."):
                continue  # a module naming its own package (re-exports) is no cycle of code
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


# what each layer may import (besides itself): the architecture's one-way flow
ALLOWED = {
    "reference": set(),
    "errors": set(),
    "layers": set(),
    "data": {"errors"},
    "config": {"errors", "layers", "data"},
    "forecast": {"errors"},  # metrics and statistical baselines; the backtest, which trains runs, is above
    "training": {"errors", "config", "data", "layers", "report", "diagnostics"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(layer):
    graph = _graph()
    for mod, deps in graph.items():
        if _layer(mod) != layer:
            continue
        above = {d for d in deps if _layer(d) not in ALLOWED[layer] | {layer}}
        assert not above, f"{mod} imports {sorted(above)}: {layer} may import only {sorted(ALLOWED[layer])}"


def test_training_core_knows_no_task():
    for mod, deps in _graph().items():
        if mod.startswith("rnnkit.training"):
            assert not {d for d in deps if d.startswith(("rnnkit.tasks", "rnnkit.build", "rnnkit.api"))}, mod


# ---------------------------------------------------------------------------------------------- a boring fit
class Boring(Data, Objective):
    """y = 2x from 64 points: a dozen lines of Data and Objective."""

    metrics = ("loss",)

    def setup(self) -> None:
        x = torch.linspace(-1, 1, 64)[:, None]
        xy = torch.cat([x, 2 * x], 1)  # (N, 2): one item per row
        self.splits = {"train": xy, "val": xy[::4]}

    def make_batch(self, data, idx):
        return data[idx, :1], data[idx, 1:]

    def build_model(self) -> nn.Module:
        return nn.Linear(1, 1)

    def step(self, model, batch, device) -> StepResult:
        x, y = batch
        return StepResult(((model(x) - y) ** 2).sum(), len(x))

    def evaluate(self, model, data, device) -> dict:
        with torch.no_grad():
            return {"loss": float(((model(data[:, :1]) - data[:, 1:]) ** 2).mean())}


def test_a_fake_objective_and_data_train_through_the_trainer(tmp_path):
    cfg = TrainingConfig(epochs=30, lr=0.1, batch_size=16, device="cpu", num_threads=1)
    boring = Boring()
    trainer = Trainer(cfg)
    metrics = trainer.fit(boring, boring)  # no run folder: nothing written
    assert metrics["val"]["loss"] < 1e-3 and metrics["best_epoch"] is not None
    assert abs(trainer.model.weight.item() - 2.0) < 0.05
    assert not any(tmp_path.iterdir())
    again = Trainer(cfg).fit(boring, boring, tmp_path / "run")  # with one: checkpoints, metrics, report
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["val"] == again["val"]
    assert (tmp_path / "run" / "checkpoints" / "best").is_dir() and (tmp_path / "run" / "report.html").is_file()
