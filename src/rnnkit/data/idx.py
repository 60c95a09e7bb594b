"""IDX files (the MNIST format), plain or gzipped.

Layout: two zero bytes, a type byte, the number of dimensions ``ndim``, then ``ndim`` big-endian uint32
sizes, then the values in C order, big-endian. Type bytes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from rnnkit.data.errors import DataError

#: IDX type byte -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}; check the path or download the dataset") from None
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror}; check the path and permissions") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"corrupt or truncated gzip in {path} ({e}); delete it and download it again") from None


def read_idx(path: Path | str) -> np.ndarray:
    """Read an IDX file (gzip detected by its magic bytes) into a native-endian array of its shape.

    Raises :class:`DataError` naming the file when the magic, dimensions or data size are wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    fix = "delete it and download it again"
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES or data[3] == 0:
        raise DataError(f"{path} is not an IDX file (bad magic {data[:4].hex() or 'empty'}); {fix}")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header; {fix}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    size = count * dtype.itemsize
    if len(data) - header != size:
        kind = "truncated" if len(data) - header < size else "longer than its header says"
        raise DataError(f"{path} is {kind}: shape {shape} needs {size} data bytes, found {len(data) - header}; "
                        f"{fix}")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return values.astype(dtype.newbyteorder("=")).reshape(shape)


def write_idx(path: Path | str, array: np.ndarray) -> Path:
    """Write ``array`` (any shape, 1..255 dimensions, an IDX dtype) as IDX; gzipped if the name ends ``.gz``."""
    path, array = Path(path), np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or not 1 <= array.ndim <= 255:
        raise DataError(f"cannot write {array.dtype} array of {array.ndim} dims as IDX; use one of "
                        "uint8, int8, int16, int32, float32, float64 with 1..255 dims")
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path.write_bytes(gzip.compress(blob, mtime=0) if path.suffix == ".gz" else blob)
    return path
