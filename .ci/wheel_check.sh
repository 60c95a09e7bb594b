#!/usr/bin/env bash
# What an editable install hides: build the wheel, install it (not editable) into a fresh environment, and from
# another folder run a layer through rnnkit's native kernel (its C++ sources must be in the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
.venv/bin/pip wheel -q --no-deps -c constraints.txt -w "$work/dist" . 2>&1 | grep -v "^WARNING: Location" || true
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -c constraints.txt "$work"/dist/rnnkit-*.whl 2>&1 | grep -v "^WARNING: Location" || true
cd "$work"
"$work/venv/bin/python" - <<'PY'
import zipfile, glob, torch, rnnkit
from rnnkit.layers import native
names = zipfile.ZipFile(glob.glob("dist/rnnkit-*.whl")[0]).namelist()
need = ["rnnkit/layers/csrc/scan.h", "rnnkit/layers/csrc/scan_ops.cpp", "rnnkit/data/embedded/digits.npz"]
missing = [n for n in need if n not in names] + ([] if any(n.endswith("/LICENSE") for n in names) else ["LICENSE"])
assert not missing, f"the wheel lacks {missing}"
assert "site-packages" in rnnkit.__file__, rnnkit.__file__
layer = rnnkit.GRU(3, 4)
assert layer.engine == "native", native.why_unavailable()
out, h = layer(torch.randn(2, 5, 3))
out.sum().backward()
assert native.is_built() and type(out.grad_fn).__name__ == "NativeScanFunctionBackward"
print(f"wheel check: {len(names)} files, native kernel ok from {rnnkit.__file__}")
PY
"$work/venv/bin/rnnkit" doctor | grep "native kernel: ok"
