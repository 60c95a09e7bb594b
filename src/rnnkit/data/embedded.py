"""Small real datasets shipped inside the package (``rnnkit/data/embedded/``), for ``rnnkit demo`` and
tests; no download and no scikit-learn needed. Provenance and licences: ``embedded/README.md``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from rnnkit.data.errors import DataError
from rnnkit.data.sequences import SequenceData

#: name -> (file in ``embedded/``, one-line description).
EMBEDDED = {
    "digits": ("digits.npz", "UCI optical handwritten digits, 1797 images of 8x8 read as 8 steps of 8 features "
                             "(CC BY 4.0, Alpaydin & Kaynak 1998)"),
}


def load_embedded(name: str = "digits") -> SequenceData:
    """An embedded dataset as sequences.

    ``"digits"``: ``X`` float32 ``(1797, 8, 8)`` (image rows as time steps, pixel counts 0..16 scaled to
    [0, 1]), ``y`` int64 ``(1797,)`` in 0..9, ``classes`` ``["0", ..., "9"]``, ``lengths`` ``None``.
    """
    if name not in EMBEDDED:
        raise DataError(f"unknown embedded dataset {name!r}; use one of {', '.join(EMBEDDED)}")
    source = resources.files("rnnkit.data") / "embedded" / EMBEDDED[name][0]
    try:
        with resources.as_file(source) as path, np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"embedded dataset {name!r} is missing or damaged ({type(e).__name__}); "
                        "reinstall rnnkit") from None
    X = images.astype(np.float32) / np.float32(16)
    return SequenceData(X, labels.astype(np.int64), None, [str(d) for d in range(10)])
