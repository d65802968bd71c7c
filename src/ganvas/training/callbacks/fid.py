"""FID during training (``--fid-every N``): a callback that adds ``Metric/FID`` to the tick
record, on a fixed latent batch from the sampling (EMA) generator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ganvas.rng import FID_LATENTS, stream
from ganvas.training.callbacks import Callback

if TYPE_CHECKING:
    from ganvas.metrics.inception import FeatureExtractor
    from ganvas.training.callbacks import RunView as Trainer

BATCH = 50


class FIDMonitor(Callback):
    """Scores the generator every ``every`` steps against ``num`` real images.

    The real images' statistics are computed once and cached on disk (see
    :func:`ganvas.metrics.real_statistics`); each check then costs ``num`` generated images
    through the Inception network. The latents are fixed, so successive values are comparable
    and the training randomness is untouched.
    """

    def __init__(self, every: int, num: int, inception: str | None = None,
                 extractor: FeatureExtractor | None = None):
        self.every, self.num, self.inception = every, num, inception
        self.extractor = extractor
        self.last_step = 0
        self.real = None
        self.latents: torch.Tensor | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        from ganvas.metrics import load_inception, real_statistics

        c = trainer.config
        if self.extractor is None:
            self.extractor = load_inception(self.inception, device=str(trainer.device),
                                            log=trainer.log)
        self.real = real_statistics(c.data, c.resolution, c.channels, self.extractor,
                                    num=self.num, progress=trainer.progress, log=trainer.log,
                                    aspect=c.aspect, fit=c.fit)
        self.latents = torch.randn(self.num, c.latent_dim,
                                   generator=stream(c.seed, FID_LATENTS))

    def on_tick(self, trainer: Trainer, record: dict[str, Any]) -> None:
        due = trainer.step - self.last_step >= self.every or trainer.step == trainer.config.steps
        if not due or self.real is None:
            return
        from ganvas.metrics.statistics import frechet_distance_to

        self.last_step = trainer.step
        feats = np.concatenate([self.extractor.features(trainer.render(part))
                                for part in self.latents.split(BATCH)])
        if not np.isfinite(feats).all():
            return
        record["Metric/FID"] = round(frechet_distance_to(feats, self.real.mu, self.real.sigma), 4)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", 0))
