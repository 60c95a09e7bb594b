"""Recurrent layers on PyTorch: cells (one step) and the generic layer that runs them over time.

``RNN``, ``LSTM`` and ``GRU`` share one interface, ``forward(x, lengths=None, state=None) -> (outputs,
state)``, and torch.nn's parameter names and layout.
"""

from rnnkit.layers.activations import ACTIVATIONS
from rnnkit.layers.cell import Cell
from rnnkit.layers.gru import GRU, GRUCell
from rnnkit.layers.lstm import LSTM, LSTMCell
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.rnn import RNN, RNNCell

__all__ = ["ACTIVATIONS", "GRU", "LSTM", "RNN", "Cell", "GRUCell", "LSTMCell", "RNNCell", "Recurrent"]
