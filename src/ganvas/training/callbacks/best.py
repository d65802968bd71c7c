"""``--keep-best`` and ``--stop-when-stale K`` with ``--fid-every``: "when do I stop
training?" answered by the measure. The checkpoint and the generator of the lowest FID so
far are kept in ``RUN/best/`` (replaced atomically when FID improves); a run whose FID has
not improved for K measurements in a row ends, in plain words, naming its best step. The
best value, its step and the count of measurements since survive a resume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganvas import __version__
from ganvas.models.export import save_generator
from ganvas.runs import checkpoint as ckpt
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.training.callbacks import RunView

FOLDER = "best"


class BestFID(Callback):
    def __init__(self, *, keep: bool = True, patience: int | None = None):
        self.keep, self.patience = keep, patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0

    def on_train_start(self, trainer: RunView) -> None:
        # Resuming a run that ended for staleness means: try again for K measurements.
        if self.patience is not None and self.stale >= self.patience:
            self.stale = 0

    def on_tick(self, trainer: RunView, record: dict[str, Any]) -> None:
        fid = record.get("Metric/FID")
        if not isinstance(fid, (int, float)):
            return
        if self.best is None or fid < self.best:
            self.best, self.best_step, self.stale = float(fid), trainer.step, 0
            if self.keep:
                self._keep(trainer)
            return
        self.stale += 1
        if self.patience is not None and self.stale >= self.patience:
            trainer.request_stop(
                f"FID has not improved for {self.stale} measurements (best {self.best:.2f} at "
                f"step {self.best_step}" + (f", kept in {trainer.run_dir / FOLDER}"
                                            if self.keep else "") + ")")

    def _keep(self, trainer: RunView) -> None:
        folder = trainer.run_dir / FOLDER
        ckpt.save_checkpoint(folder / "checkpoint.pt", trainer.state_dict())
        save_generator(folder / "generator", trainer.sampling_generator,
                       trainer.config.to_dict(), step=trainer.step, ganvas_version=__version__)
        trainer.log(f"best FID so far: {self.best:.2f} at step {trainer.step}; kept in {folder}")

    def on_train_end(self, trainer: RunView, result: Any) -> None:
        if self.best is not None:
            where = f" (its checkpoint and generator: {trainer.run_dir / FOLDER})" \
                if self.keep else ""
            trainer.log(f"best FID {self.best:.2f} at step {self.best_step}{where}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best, step = state.get("best"), state.get("best_step")
        self.best = float(best) if isinstance(best, (int, float)) else None
        self.best_step = int(step) if isinstance(step, int) else None
        self.stale = int(state.get("stale", 0))
