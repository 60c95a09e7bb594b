"""Diagnostics: see inside a trained recurrent network.

* :mod:`.through_time` - ``gradient_through_time(model, loss_fn)``: ||dL/dh_t|| at every step and layer,
  the first/last ratio and a vanishing / exploding / healthy verdict; gate saturation; hidden states.
* :mod:`.runs` - the same for a run folder (``diagnose_run``), the ``grad_through_time`` training
  callback, and the report sections "Gradient through time", "Gate statistics" and "Hidden states".

Only torch and numpy load here; plots import matplotlib when drawn.
"""

from rnnkit.diagnostics.through_time import GradientReport, Trace, gate_statistics, gradient_through_time, trace

__all__ = ["GradientReport", "Trace", "gate_statistics", "gradient_through_time", "trace"]
