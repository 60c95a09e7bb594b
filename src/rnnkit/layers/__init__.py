"""Recurrent layers on PyTorch: cells (one step and their identity) and the generic layer that runs them.

``RNN``, ``LSTM`` and ``GRU`` take torch.nn's call, ``forward(input, hx=None, *, lengths=None) -> (output,
h_n)``, and torch.nn's parameter names and layout. ``CELLS`` maps each cell's name (a config's ``model.cell``)
to its layer class; :func:`make_layer` builds one by name.
"""

from rnnkit.layers.activations import ACTIVATIONS
from rnnkit.layers.cell import Cell, ParamSpec
from rnnkit.layers.gru import GRU, GRUCell
from rnnkit.layers.indrnn import IndRNN, IndRNNCell
from rnnkit.layers.lstm import LSTM, LSTMCell
from rnnkit.layers.minimal import MinGRU, MinGRUCell, MinLSTM, MinLSTMCell
from rnnkit.layers.native import Dropout
from rnnkit.layers.recurrent import ENGINES, MERGE_MODES, Recurrent
from rnnkit.layers.registry import CELLS, make_layer, register_cell
from rnnkit.layers.rnn import RNN, RNNCell

__all__ = ["ACTIVATIONS", "CELLS", "ENGINES", "GRU", "LSTM", "MERGE_MODES", "RNN", "Cell", "Dropout", "GRUCell",
           "IndRNN", "IndRNNCell", "LSTMCell", "MinGRU", "MinGRUCell", "MinLSTM", "MinLSTMCell", "ParamSpec", "RNNCell",
           "Recurrent", "make_layer", "register_cell"]
