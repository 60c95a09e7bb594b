"""The training engine (loop, checkpoints, resume, DDP) and training callbacks; see :mod:`.engine`."""

from rnnkit.training.callbacks import Callback, Context, register_callback
from rnnkit.training.checkpoint import CheckpointError
from rnnkit.training.engine import Trainer, TrainingDiverged, fit

__all__ = ["Callback", "CheckpointError", "Context", "Trainer", "TrainingDiverged", "fit", "register_callback"]
