"""``rnnkit export RUN``: the whole trained model (task head included) as ONNX or a torch.export program.

The run's task says what to export and with which inputs (:meth:`rnnkit.tasks.base.Task.export_spec`): the
batch and time axes stay dynamic. Before anything is written the exported graph is run on real inputs from the
run's data (made-up ones when the data is not at hand) and must give the eager model's outputs; the file is
written to a temporary name and renamed, so a failed export leaves nothing behind.

* ``--format onnx`` (default): ``torch.onnx.export(..., dynamo=True)``; rnnkit's layers trace their autograd
  engine there, whose time loop becomes an ONNX ``Scan``, so any onnxruntime runs the file. Needs the
  ``rnnkit[export]`` extra (onnx, onnxscript, onnxruntime).
* ``--format pt2``: ``torch.export.export`` then ``torch.export.save``; on the CPU the graph keeps rnnkit's
  native kernel as the custom op ``rnnkit::native_scan``, so ``import rnnkit`` before ``torch.export.load``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

FORMATS = ("onnx", "pt2")


from rnnkit.errors import ExportError  # noqa: E402 - re-exported


def _onnx_modules():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"--format onnx needs {exc.name}: pip install 'rnnkit[export]' (onnx, onnxscript, "
                          "onnxruntime)") from None
    return onnxruntime


def _dims(spec) -> dict[str, dict[int, torch.export.Dim]]:
    """The spec's named dynamic axes as torch.export Dims, one object per name (shared across inputs)."""
    made: dict[str, torch.export.Dim] = {}
    out = {}
    for name, axes in spec.dynamic.items():
        out[name] = {}
        for axis, label in axes.items():
            if label not in made:
                made[label] = torch.export.Dim(label, min=1, max=1_000_000) if label == "batch" else \
                    torch.export.Dim(label, min=2, max=1_000_000)
            out[name][axis] = made[label]
    return {n: out.get(n) for n in spec.names}


def _two_steps(spec) -> tuple[torch.Tensor, ...]:
    """The example inputs with every free time axis at least 2 long: torch.export fixes an axis it sees at size 1.
    Only where the spec passes ``lengths``: the added steps are zero padding past every length, so masked."""
    if "lengths" not in spec.names:
        return spec.inputs
    out = []
    for name, t in zip(spec.names, spec.inputs, strict=True):
        for axis, label in spec.dynamic.get(name, {}).items():
            if label != "batch" and t.shape[axis] < 2:
                pad = list(t.shape)
                pad[axis] = 2 - t.shape[axis]
                t = torch.cat([t, t.new_zeros(pad)], axis)
        out.append(t)
    return tuple(out)


def _close(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """The largest difference, relative to each output's scale; raise when shapes differ."""
    worst = 0.0
    for a, b in zip(got, want, strict=True):
        if tuple(a.shape) != tuple(b.shape):
            raise RuntimeError(f"internal error: exported output shape {tuple(a.shape)} != eager {tuple(b.shape)}")
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        worst = max(worst, float((a.float() - b.float()).abs().max()) / scale if b.numel() else 0.0)
    return worst


def _check_dynamic(model_proto, spec) -> None:
    """Refuse an ONNX graph whose batch or time axis came out fixed (the exporter can specialise silently)."""
    for inp in model_proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        for axis in spec.dynamic.get(inp.name, {}):
            if axis < len(dims) and not dims[axis].dim_param:
                raise RuntimeError(f"internal error: the ONNX export fixed axis {axis} of input {inp.name} to "
                                   f"{dims[axis].dim_value}; nothing was written")


def export_run(run_dir: str | Path, fmt: str = "onnx", output: str | Path | None = None,
               checkpoint: str = "best", tolerance: float = 1e-4) -> tuple[Path, str]:
    """Export ``run_dir``'s model; returns the file written and a how-to-run text. Raises :class:`ExportError`
    for user mistakes and RuntimeError when the exported graph does not match the model (a bug)."""
    from rnnkit.api import Run
    from rnnkit.data import DataError

    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run_dir = Path(run_dir)
    out = Path(output) if output is not None else run_dir / f"model.{fmt}"
    if out.is_dir():
        raise ExportError(f"--output {out} is a folder; give a file name such as {out / ('model.' + fmt)}")
    if not out.parent.is_dir():
        raise ExportError(f"--output {out}: folder {out.parent} does not exist")
    ort = _onnx_modules() if fmt == "onnx" else None
    run = Run.load(run_dir, checkpoint)
    task, model = run.task, run.model.eval()
    data, note = None, "inputs from the run's data"
    try:
        state = task.state()
        task.setup()
        task.load_state(state)
        data = next((task.splits[s] for s in ("test", "val", "train") if s in task.splits), None)
    except (DataError, FileNotFoundError, OSError) as exc:
        note = f"made-up inputs (the run's data is not at hand here: {' '.join(str(exc).split())[:120]})"
    spec = task.export_spec(model, data)
    spec.module.eval()  # a task's wrapper (the LM's step) is a new module, in training mode until told
    spec.inputs = _two_steps(spec)
    with torch.no_grad():
        want = spec.module(*spec.inputs)
    want = list(want) if isinstance(want, tuple | list) else [want]
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".tmp.{fmt}", dir=out.parent)
    os.close(fd)
    try:
        if fmt == "pt2":
            ep = torch.export.export(spec.module, spec.inputs, dynamic_shapes=_dims(spec))
            with torch.no_grad():
                got = ep.module()(*spec.inputs)
            got = list(got) if isinstance(got, tuple | list) else [got]
            logging.getLogger("torch._export.serde.serialize").setLevel(logging.ERROR)  # its note on empty lists
            torch.export.save(ep, tmp)
        else:
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on absent torchvision ops
            with warnings.catch_warnings():  # the exporter's notes to torch developers, not to the user
                warnings.simplefilter("ignore", FutureWarning)
                warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used")
                prog = torch.onnx.export(spec.module, spec.inputs, dynamo=True, dynamic_shapes=_dims(spec),
                                         input_names=spec.names, output_names=spec.outputs, verbose=False)
            prog.optimize()  # constant folding and dead-code removal (no unused initialisers left to warn about)
            _check_dynamic(prog.model_proto, spec)
            prog.save(tmp)
            sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            feeds = {n: t.numpy() for n, t in zip(spec.names, spec.inputs, strict=True)}
            got = [torch.from_numpy(a) for a in sess.run(None, feeds)]
        diff = _close(got, want)
        if diff > tolerance:
            raise RuntimeError(f"internal error: the exported {fmt} graph differs from the model by {diff:.2e} "
                               f"(more than {tolerance:g}) on {note}; nothing was written")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(spec.names, spec.inputs, strict=True))
    lines = [f"parity: max difference {diff:.1e} against the eager model on {len(spec.inputs[0])} {note} ({shapes})",
             f"inputs: {spec.doc}"]
    if fmt == "onnx":
        feed = ", ".join(f'"{n}": {n}' for n in spec.names)
        lines += ["run it with onnxruntime (batch and time are free):",
                  "    import onnxruntime as ort",
                  f'    sess = ort.InferenceSession("{out}")',
                  f"    [{', '.join(spec.outputs)}] = sess.run(None, {{{feed}}})  # numpy arrays"]
    else:
        lines += ["run it with torch (import rnnkit first: the graph may call its native kernel):",
                  f'    import rnnkit, torch; program = torch.export.load("{out}")',
                  f"    outputs = program.module()({', '.join(spec.names)})"]
    return out, "\n".join(lines)
