"""rnnkit: recurrent neural networks (Elman RNN, LSTM, GRU, minGRU, minLSTM, IndRNN) done right.

* :mod:`rnnkit.reference` - the textbook math in NumPy: forward pass, backpropagation through time,
  gradient checking.
* :mod:`rnnkit.layers` - fast, flexible PyTorch layers with torch.nn's parameter layout.
* ``rnnkit.SequenceClassifier``, ``TextClassifier``, ``Forecaster``, ``LanguageModel`` - scikit-learn-style
  estimators on in-memory data; ``rnnkit.load(run_dir)`` gives one back.
* ``rnnkit.train(config) -> Run`` - the training engine behind the ``rnnkit`` command.

Importing ``rnnkit`` loads only torch and numpy; the training API loads on first use.
"""

from typing import Any

from rnnkit._version import __version__
from rnnkit.layers import GRU, LSTM, RNN, IndRNN, MinGRU, MinLSTM

_ESTIMATORS = ("SequenceClassifier", "TextClassifier", "Forecaster", "LanguageModel", "Seq2Seq", "load")
__all__ = ["GRU", "LSTM", "RNN", "IndRNN", "MinGRU", "MinLSTM", "Run", "__version__", "train", *_ESTIMATORS]


def __getattr__(name: str) -> Any:
    if name in ("train", "Run"):
        from rnnkit import api

        return getattr(api, name)
    if name in _ESTIMATORS:
        from rnnkit import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
