"""rnnkit: recurrent neural networks (Elman RNN, LSTM, GRU) done right.

* :mod:`rnnkit.reference` - the textbook math in NumPy: forward pass, backpropagation through time,
  gradient checking.
* :mod:`rnnkit.layers` - fast, flexible PyTorch layers with torch.nn's parameter layout.

Importing ``rnnkit`` loads only torch and numpy.
"""

from rnnkit.layers import GRU, LSTM, RNN

__version__ = "0.1.0"
__all__ = ["GRU", "LSTM", "RNN", "__version__"]
