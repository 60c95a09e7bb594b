"""rnnkit.data sources: paths, IDX files, NPZ/CSV sequences, embedded digits, real Fashion-MNIST."""

from __future__ import annotations

import gzip
import types
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data import (
    FASHION_MNIST_CLASSES,
    DataError,
    SequenceData,
    class_names,
    data_root,
    load_csv,
    load_embedded,
    load_mnist,
    load_mnist_sequences,
    load_npz,
    read_idx,
    write_idx,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _one_line(info: pytest.ExceptionInfo[DataError]) -> str:
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ValueError)
    return message


# --- paths -------------------------------------------------------------------------------------------------

def test_data_root_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RNNKIT_DATA", raising=False)
    assert data_root() == tmp_path / ".cache" / "rnnkit"
    monkeypatch.setenv("BASE", "/srv/data")
    monkeypatch.setenv("RNNKIT_DATA", "${BASE}/rnnkit")
    assert data_root() == Path("/srv/data/rnnkit")
    monkeypatch.setenv("RNNKIT_DATA", "~/sets")
    assert data_root() == tmp_path / "sets"


# --- IDX ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path: Path, dtype: str, name: str) -> None:
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    out = read_idx(write_idx(tmp_path / name, array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_idx_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    gz = write_idx(tmp_path / "x.gz", np.arange(4, dtype=np.int32))
    renamed = gz.rename(tmp_path / "x-idx1-ubyte")
    np.testing.assert_array_equal(read_idx(renamed), np.arange(4))


@pytest.mark.parametrize(("blob", "pattern"), [
    (b"", "not an IDX file"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "bad magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x02ab", "bad magic"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated inside its IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "truncated: shape \\(5,\\) needs 5 data bytes, found 3"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x02abc", "longer than its header says"),
])
def test_idx_malformed(tmp_path: Path, blob: bytes, pattern: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(blob)
    with pytest.raises(DataError, match=pattern) as info:
        read_idx(path)
    assert str(path) in _one_line(info)


def test_idx_truncated_gzip_and_missing_file(tmp_path: Path) -> None:
    blob = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x10\x00" + bytes(4096))
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip in .*cut.gz"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(DataError, match="IDX file not found"):
        read_idx(tmp_path / "nope.gz")


def test_load_mnist_validates_local_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (6, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 6, dtype=np.uint8))
    images, labels = load_mnist("fashion-mnist", "test", root=tmp_path, download=False)
    assert images.shape == (6, 28, 28) and labels.dtype == np.int64
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError, match="6 images but t10k-labels-idx1-ubyte.gz has 5 labels"):
        load_mnist("fashion-mnist", "test", root=tmp_path, download=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"not uint8 \(N, 28, 28\) images"):
        load_mnist("fashion-mnist", "test", root=tmp_path, download=False)
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_mnist("mnist", "valid", root=tmp_path)
    with pytest.raises(DataError, match="unknown dataset 'kmnist'"):
        load_mnist("kmnist")


# --- SequenceData, NPZ, CSV --------------------------------------------------------------------------------

def test_npz_round_trip_with_lengths_and_classes(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(4, 5, 3))
    np.savez(tmp_path / "d.npz", X=X, y=[0, 1, 2, 1], lengths=[5, 3, 1, 5], classes=np.array(["a", "b", "c"]))
    data = load_npz(tmp_path / "d.npz")
    assert data.X.dtype == np.float32 and data.X.shape == (4, 5, 3) and data.y.dtype == np.int64
    assert data.lengths.tolist() == [5, 3, 1, 5] and data.classes == ["a", "b", "c"]
    assert (len(data), data.num_steps, data.num_features, data.num_classes, data.per_step) == (4, 5, 3, 3, False)


def test_npz_two_dim_x_and_per_step_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", X=np.ones((3, 4)), y=np.array([[0, 1, 1, 7]] * 3, dtype=float),
             lengths=[4, 2, 3])
    data = load_npz(tmp_path / "d.npz")
    assert data.X.shape == (3, 4, 1) and data.per_step and data.classes is None
    assert data.y.tolist() == [[0, 1, 1, 7], [0, 1, 0, 0], [0, 1, 1, 0]]  # padding labels zeroed


@pytest.mark.parametrize(("arrays", "pattern"), [
    ({"X": np.ones((3, 4, 2))}, "lacks array y"),
    ({"X": np.ones((3, 4, 2)), "y": [0, 1]}, r"y has shape \(2,\); expected \(3,\)"),
    ({"X": np.ones((3, 4, 2)), "y": [0, -1, 1]}, "labels must be integers >= 0, found -1"),
    ({"X": np.ones((3, 4, 2)), "y": [0, 0.5, 1]}, "y must hold integers"),
    ({"X": np.full((3, 4, 2), np.nan), "y": [0, 1, 1]}, "NaN or infinite values .*sequence 0"),
    ({"X": np.ones((3, 4, 2)), "y": [0, 1, 1], "lengths": [4, 0, 2]}, r"lengths must lie in 1..4"),
    ({"X": np.ones((3, 4, 2)), "y": [0, 1, 1], "lengths": [4, 5, 2]}, r"lengths must lie in 1..4"),
    ({"X": np.ones((3, 4, 2)), "y": [0, 1, 1], "lengths": [4, 2]}, r"lengths has shape \(2,\)"),
    ({"X": np.ones((3,)), "y": [0, 1, 1]}, r"X has shape \(3,\)"),
    ({"X": np.array([["a"]]), "y": [0]}, "X must be numeric"),
    ({"X": np.ones((2, 4)), "y": [0, 2], "classes": np.array(["a", "b"])}, "label 2 has no name"),
])
def test_npz_bad_inputs(tmp_path: Path, arrays: dict, pattern: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=pattern) as info:
        load_npz(tmp_path / "bad.npz")
    assert _one_line(info).startswith(str(tmp_path / "bad.npz"))


def test_npz_unreadable(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_npz(tmp_path / "one.npy")
    with pytest.raises(DataError, match="file not found"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "obj.npz", X=np.array([None, 1], dtype=object), y=[0, 1])
    with pytest.raises(DataError, match="without object arrays"):
        load_npz(tmp_path / "obj.npz")


def test_sequence_data_split_and_subset() -> None:
    data = SequenceData.from_arrays(np.arange(20.0).reshape(10, 2), np.arange(10) % 2, lengths=np.ones(10, int))
    train, test = data.split(0.3, seed=1)
    assert (len(train), len(test)) == (7, 3) and train.lengths.shape == (7,)
    assert sorted(train.X[:, 0, 0].tolist() + test.X[:, 0, 0].tolist()) == data.X[:, 0, 0].tolist()
    assert data.split(0.3, seed=1)[1].y.tolist() == test.y.tolist()  # deterministic


CSV = """id,t,f1,f2,label
b,1,0.5,1.5,dog
a,0,1,2,cat
b,0,0.25,1.25,dog
a,1,3,4,cat
a,2,5,6,cat
"""


def test_csv_long_format(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(CSV)
    data = load_csv(tmp_path / "s.csv")
    assert data.X.shape == (2, 3, 2) and data.lengths.tolist() == [2, 3] and data.classes == ["cat", "dog"]
    assert data.y.tolist() == [1, 0]  # sequences in order of first appearance: b, a
    np.testing.assert_array_equal(data.X[0], [[0.25, 1.25], [0.5, 1.5], [0, 0]])  # sorted by t, zero-padded
    assert load_csv(tmp_path / "s.csv", features=["f2"]).X.shape == (2, 3, 1)


def test_csv_per_step_integer_labels_without_t(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("id;x;label\n7;1;0\n7;2;1\n8;3;2\n")
    data = load_csv(tmp_path / "s.csv", delimiter=";")
    assert data.per_step and data.y.tolist() == [[0, 1], [2, 0]] and data.classes is None
    assert data.X[:, :, 0].tolist() == [[1, 2], [3, 0]]
    with pytest.raises(DataError, match="label varies within sequence '7'.*per_step=True"):
        load_csv(tmp_path / "s.csv", delimiter=";", per_step=False)


@pytest.mark.parametrize(("text", "pattern"), [
    ("", "is empty"),
    ("id,t,f1\n", "no 'label' column"),
    ("seq,f1,label\n", "no 'id' column"),
    ("id,label\n", "feature columns missing"),
    ("id,f1,label\n", "no data rows"),
    ("id,f1,label\na,1,0\na,,0\n", r"line 3: f1 = '' is not a number"),
    ("id,t,f1,label\na,x,1,0\n", r"line 2: t = 'x' is not a number"),
    ("id,f1,label\na,1\n", "line 2 has 2 fields, the header has 3"),
    ("id,t,f1,label\na,0,1,0\na,0,2,0\n", "sequence 'a' repeats a t value"),
    ("id,f1,label\na,nan,0\n", "NaN or infinite"),
    ("id,f1,label\na,1,-2\n", "labels must be integers >= 0, found -2"),
])
def test_csv_bad_inputs(tmp_path: Path, text: str, pattern: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DataError, match=pattern) as info:
        load_csv(tmp_path / "bad.csv")
    _one_line(info)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "none.csv")


# --- embedded and real data --------------------------------------------------------------------------------

def test_embedded_digits() -> None:
    data = load_embedded("digits")
    assert data.X.shape == (1797, 8, 8) and data.X.dtype == np.float32 and data.y.dtype == np.int64
    assert 0.0 == data.X.min() and data.X.max() == 1.0 and data.lengths is None
    assert data.classes == [str(d) for d in range(10)] and np.bincount(data.y).min() >= 170
    with pytest.raises(DataError, match="unknown embedded dataset 'iris'"):
        load_embedded("iris")


@pytest.mark.skipif(not (SHARED / "fashion-mnist").is_dir(), reason="no ../shared/datasets/fashion-mnist")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNKIT_DATA", str(SHARED))
    images, labels = load_mnist("fashion-mnist", "train", download=False)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10 and len(class_names("fashion-mnist")) == 10
    test = load_mnist_sequences("fashion-mnist", "test", download=False)
    assert test.X.shape == (10000, 28, 28) and 0 <= test.X.min() and test.X.max() <= 1
    assert test.classes == FASHION_MNIST_CLASSES and test.num_classes == 10


# ----------------------------------------------------------------------------- the source registry
def test_a_new_source_is_one_function_and_its_options_are_checked(tmp_path):
    import rnnkit.data.sources as src
    from rnnkit.build import fit, load_config
    from rnnkit.config import ConfigError
    from rnnkit.data.sequences import SequenceData

    @src.register_source("noise-test", modality="sequences")
    def noise(d, part, *, n: int = 60, steps: int = 5):
        if part != "train":
            return None
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n, steps, 2)).astype(np.float32)
        return SequenceData.from_arrays(X, (X[:, :, 0].sum(1) > 0).astype(np.int64))

    try:
        cfg = {"name": "noise", "model": {"hidden_size": 4},
               "data": {"source": "noise-test", "options": {"n": 40}, "test_fraction": 0.2},
               "training": {"epochs": 1, "num_threads": 1, "device": "cpu"}}
        run_dir, metrics = fit(cfg, tmp_path / "run", quiet=True)
        assert metrics["test"]["count"] == 8
        with pytest.raises(ConfigError, match=r"data.options.stpes: unknown option \(did you mean 'steps'\?\)"):
            load_config({**cfg, "data": {**cfg["data"], "options": {"stpes": 3}}})
        with pytest.raises(ConfigError, match="data.options.n must be int, got 'many'"):
            load_config({**cfg, "data": {**cfg["data"], "options": {"n": "many"}}})
        with pytest.raises(ConfigError, match="data.source: 'noise-tset' is not one of .*did you mean 'noise-test'"):
            load_config({**cfg, "data": {**cfg["data"], "source": "noise-tset"}})
    finally:
        src.SOURCES["sequences"].pop("noise-test", None)


def test_source_options_are_cast_like_the_config_and_refuse_what_numpy_cannot_take():
    """A sweep found ``data.options.seed: -1`` an internal error (numpy takes no negative seed), and YAML 1.1
    reads ``noise: 1e-2`` as a string, which the options refused as "must be float" although the main config
    reads it as the number it spells."""
    from rnnkit.build import load_config
    from rnnkit.config import ConfigError
    from rnnkit.data.sources import load_part

    def data(**options):
        return {"task": "forecasting", "data": {"source": "seasonal", "options": options}}

    cfg = load_config(data(noise="1e-2", growth=0, n=60))
    assert cfg.data.options == {"noise": 0.01, "growth": 0.0, "n": 60}
    assert type(cfg.data.options["growth"]) is float
    for options, match in [({"seed": -1}, "data.options.seed is a random seed and must be >= 0, got -1"),
                           ({"noise": "nan"}, "data.options.noise must be a finite number, got 'nan'"),
                           ({"growth": float("inf")}, "data.options.growth must be a finite number"),
                           ({"n": 2**60}, "data.options.n: 1152921504606846976 is far too large"),
                           ({"noise": "lots"}, "data.options.noise must be float, got 'lots'"),
                           ({"growth": 1000.0}, "take the series past 1e\\+30; choose smaller ones")]:
        with pytest.raises(ConfigError, match=match):  # growth 1000 overflows only once the series is generated
            load_part("series", load_config(data(**options)).data)
    with pytest.raises(ConfigError, match="data.options.seed is a random seed"):
        load_config({"data": {"source": "cbf", "options": {"seed": -1}}})
    for task in ("sequence_classification", "forecasting", "seq2seq"):
        for bad in ("", ";;"):  # Python's csv raised TypeError: an internal error
            with pytest.raises(ConfigError, match="data.options.delimiter must be one character"):
                load_config({"task": task, "data": {"source": "csv", "options": {"delimiter": bad}}})


def test_csv_options_are_validated_before_anything_runs():
    from rnnkit.build import load_config
    from rnnkit.config import ConfigError

    base = {"data": {"source": "embedded", "options": {"delimter": ";"}}}
    with pytest.raises(ConfigError, match="source embedded takes no options"):
        load_config(base)
    for modality in ("sequences", "text", "series", "corpus"):
        from rnnkit.data.sources import sources

        assert sources(modality), modality


def test_pixel_by_pixel_and_permuted_fashion_mnist(tmp_path):
    from rnnkit.build import load_config
    from rnnkit.config import ConfigError
    from rnnkit.data import write_idx
    from rnnkit.data.sequence_sources import fashion_mnist_source

    rng = np.random.default_rng(0)
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    for split, n in (("train", 6), ("t10k", 6)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images[:n])
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    d = type("D", (), {"root": str(root), "download": False})()
    rows = fashion_mnist_source(d, "train")
    pixels = fashion_mnist_source(d, "train", pixels=True)
    assert rows.X.shape == (6, 28, 28) and pixels.X.shape == (6, 784, 1)
    np.testing.assert_array_equal(pixels.X[:, :, 0], rows.X.reshape(6, -1))  # reading order
    perm = fashion_mnist_source(d, "train", pixels=True, permute=3)
    test = fashion_mnist_source(d, "test", pixels=True, permute=3)
    order = np.random.default_rng(3).permutation(784)
    np.testing.assert_array_equal(perm.X[:, :, 0], pixels.X[:, order, 0])
    np.testing.assert_array_equal(test.X, perm.X)  # the same order for every split (same images here)
    assert not np.array_equal(perm.X, pixels.X)
    with pytest.raises(ConfigError, match="set data.options.pixels: true"):
        fashion_mnist_source(d, "train", permute=3)
    cfg = load_config({"data": {"source": "fashion-mnist", "options": {"pixels": True, "permute": 0}}})
    assert cfg.data.options == {"pixels": True, "permute": 0}


def test_cbf_is_balanced_seeded_and_has_the_three_shapes() -> None:
    from rnnkit.data.sequence_sources import CBF_CLASSES, cbf_data, cbf_source

    X, y = cbf_data(300, 128, np.random.default_rng(0))
    assert X.shape == (300, 128, 1) and X.dtype == np.float32 and np.bincount(y).tolist() == [100, 100, 100]
    X2, y2 = cbf_data(300, 128, np.random.default_rng(0))
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    # every event starts by step 32 and lasts 32 steps at least, so steps 32-47 are inside all of them: there
    # the cylinder is flat (about 6), the bell rises and the funnel falls; before step 16 there is noise only
    x = X[..., 0]
    early, late, before = x[:, 32:36].mean(1), x[:, 44:48].mean(1), x[:, :16].mean(1)
    assert abs(before.mean()) < 0.2 and 5 < early[y == 0].mean() < 7
    assert abs(late[y == 0].mean() - early[y == 0].mean()) < 0.3
    assert late[y == 1].mean() > early[y == 1].mean() + 0.5 and early[y == 2].mean() > late[y == 2].mean() + 0.5
    from rnnkit.errors import ConfigError

    d = types.SimpleNamespace()
    train, test = cbf_source(d, "train"), cbf_source(d, "test", n_test=90, seed=3)
    assert len(train) == 30 and len(test) == 90 and train.classes == CBF_CLASSES
    assert cbf_source(d, "val") is None and not np.array_equal(cbf_source(d, "test", n_test=30).X, train.X)
    with pytest.raises(ConfigError, match="n_train"):
        cbf_source(d, "train", n_train=2)


def test_the_seasonal_source_is_seeded_monthly_and_its_season_grows_with_the_level() -> None:
    from rnnkit.data.series import seasonal_source
    from rnnkit.errors import ConfigError

    d = types.SimpleNamespace()
    s = seasonal_source(d)
    assert len(s) == 144 and s.freq == "M" and s.dates()[0] == "1990-01" and s.dates()[-1] == "2001-12"
    assert (s.y > 0).all() and np.array_equal(s.y, seasonal_source(d).y)
    assert not np.array_equal(s.y, seasonal_source(d, seed=1).y)
    years = s.y.reshape(12, 12)
    swing = years.max(1) - years.min(1)
    ratio = years.max(1) / years.min(1)
    assert swing[-3:].mean() > 2.5 * swing[:3].mean()  # the season's swing grows with the level ...
    assert abs(np.log(ratio[-3:]).mean() / np.log(ratio[:3]).mean() - 1) < 0.35  # ... its ratio does not
    assert years[-1].mean() > 3 * years[0].mean()  # growth 0.01 a month: e^1.32 over 11 years
    assert len(seasonal_source(d, n=30, start="2020-06")) == 30
    with pytest.raises(ConfigError, match="options.n"):
        seasonal_source(d, n=10)
    with pytest.raises(ConfigError, match="options.start"):
        seasonal_source(d, start="June")
