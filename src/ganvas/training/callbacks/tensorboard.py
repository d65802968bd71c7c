"""``--tensorboard``: the run as TensorBoard sees runs, in ``RUN/tensorboard``: every number
of each tick's record as a scalar (the same names as metrics.jsonl: ``Loss/D``,
``Health/diversity``, ...), each sample grid as an image, and the health monitor's events
as text. A resumed run continues the same log: the steps after its checkpoint that the
stopped run had already logged are dropped by TensorBoard when it reads the folder
(``purge_step``), so no step appears twice."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ganvas.errors import GanvasError
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.training.callbacks import RunView

FOLDER = "tensorboard"


class TensorBoardLog(Callback):
    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GanvasError("--tensorboard needs the tensorboard package: pip install "
                              "tensorboard (or pip install \"ganvas[tensorboard]\")") from None
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def on_train_start(self, trainer: RunView) -> None:
        # A resumed run: what the stopped one logged after this step is superseded.
        self.writer = self._writer_class(log_dir=str(trainer.run_dir / FOLDER),
                                         purge_step=trainer.step + 1 if trainer.step else None)

    def on_tick(self, trainer: RunView, record: dict[str, Any]) -> None:
        step = record["step"]
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)) \
                    and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a viewer open beside the run sees each tick

    def on_event(self, trainer: RunView, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        if record["event"] in ("rollback", "divergence"):  # the steps after the good
            # checkpoint are undone: TensorBoard drops what was logged for them
            self.writer.close()
            self.writer = self._writer_class(log_dir=str(trainer.run_dir / FOLDER),
                                             purge_step=trainer.step + 1)
        self.writer.add_text(f"events/{record['event']}", str(record["message"]),
                             record["step"])

    def on_samples(self, trainer: RunView, path: Path) -> None:
        if self.writer is None:
            return
        name = "samples" if path.stem.startswith("step-") else f"samples/{path.stem}"
        with Image.open(path) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self.writer.add_image(name, pixels, trainer.step, dataformats="HWC")

    def on_train_end(self, trainer: RunView, result: Any) -> None:
        if self.writer is not None:
            self.writer.close()
