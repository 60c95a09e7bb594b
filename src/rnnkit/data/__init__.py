"""rnnkit.data: where datasets live, downloads, IDX files, sequence-classification sources, demo data.

* :func:`data_root` - ``$RNNKIT_DATA`` or ``~/.cache/rnnkit``; dataset ``name`` lives in ``data_root() / name``.
* :func:`fetch` - resumable, checksummed, atomic HTTP(S) download.
* :func:`read_idx` / :func:`write_idx` - IDX files, gzipped or not.
* :func:`load_mnist` - MNIST / Fashion-MNIST images uint8 ``(N, 28, 28)`` and labels int64 ``(N,)``.
* :class:`SequenceData` with :func:`load_npz`, :func:`load_csv`, :func:`load_mnist_sequences` and
  :func:`load_embedded` (the digits shipped with the package).

Every user-fixable problem raises :class:`DataError` (a ``ValueError``) with a one-line message. Only the
standard library and NumPy are imported here.
"""

from rnnkit.data.download import fetch
from rnnkit.data.embedded import EMBEDDED, load_embedded
from rnnkit.data.errors import DataError
from rnnkit.data.idx import read_idx, write_idx
from rnnkit.data.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES, SOURCES, class_names, load_mnist
from rnnkit.data.paths import DATASETS, data_root, dataset_dir
from rnnkit.data.sequences import SequenceData, load_csv, load_mnist_sequences, load_npz

__all__ = [
    "DATASETS", "EMBEDDED", "FASHION_MNIST_CLASSES", "MNIST_CLASSES", "SOURCES", "DataError", "SequenceData",
    "class_names", "data_root", "dataset_dir", "fetch", "load_csv", "load_embedded", "load_mnist",
    "load_mnist_sequences", "load_npz", "read_idx", "write_idx",
]
