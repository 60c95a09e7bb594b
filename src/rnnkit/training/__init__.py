"""The trainer (loop, checkpoints, resume, DDP) over a Data and an Objective (:mod:`.core`), and callbacks."""

from rnnkit.training.callbacks import Callback, Context, register_callback
from rnnkit.training.checkpoint import CheckpointError
from rnnkit.training.core import Data, Objective, StepResult
from rnnkit.training.engine import Trainer, TrainingDiverged

__all__ = ["Callback", "CheckpointError", "Context", "Data", "Objective", "StepResult", "Trainer", "TrainingDiverged",
           "register_callback"]
