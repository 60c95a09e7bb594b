"""rnnkit.reference: the RNN math in plain NumPy, float64, no autograd.

Forward passes and hand-written backpropagation through time for the Elman RNN, the LSTM and the GRU (both
reset conventions), an output projection, and a central-difference gradient checker. Parameters use torch.nn's
layout, so they can be copied into ``torch.nn.RNN/LSTM/GRU`` (``weight_ih_l0 = W_xh`` and so on).
The derivations are in docs/bptt.md.

    params = init_params("lstm", input_size=3, hidden_size=4, rng=0)
    h_seq, state_T, cache = forward("lstm", x, params)          # x (B, T, D) -> h_seq (B, T, H)
    grads = backward(cache, dh_seq, dstate_T)                   # dict: W_xh, W_hh, b_xh, b_hh, x, h0 (, c0)
    print(gradient_check("gru", reset_after=False).worst)
"""

from .activations import ACTIVATIONS, get_activation
from .core import backward, forward, init_params
from .gradcheck import GradCheckReport, gradient_check, numeric_gradient, relative_error
from .output import output_backward, output_forward

__all__ = [
    "ACTIVATIONS",
    "GradCheckReport",
    "backward",
    "forward",
    "get_activation",
    "gradient_check",
    "init_params",
    "numeric_gradient",
    "output_backward",
    "output_forward",
    "relative_error",
]
