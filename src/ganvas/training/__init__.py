"""Training: the loop, losses, checkpoints and the statistics channel."""

from ganvas.training.callbacks import Callback
from ganvas.training.trainer import Trainer, TrainResult, resume, train

__all__ = ["Callback", "TrainResult", "Trainer", "resume", "train"]
