"""StyleGAN2's recipe: four phases, as in stylegan2-ada's ``StyleGAN2Loss``.

- ``Gmain`` (every step): G's adversarial loss on a batch drawn with style mixing.
- ``Greg`` (every ``pl_every`` steps): path length regularisation on half a batch: the
  gradient of the image, projected on random pixel noise, with respect to the styles should
  have the same length for every latent (its running mean is part of the checkpoint).
- ``Dmain`` (every step): D's adversarial loss, with the standard recipe's augmentation,
  instance noise, balance gate and optional penalties.
- ``Dreg`` (every ``--r1-every`` steps): lazy R1 on the real batch of that step's ``Dmain``.

A regularisation phase steps its optimiser separately, so the optimiser of a network with a
lazy phase runs at a ratio ``interval / (interval + 1)`` of the rate, its betas raised to the
same power (the paper's correction for the extra steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ganvas.losses.recipe import Phase, StepInputs
from ganvas.losses.regularizers import r1_penalty
from ganvas.losses.standard import StandardRecipe
from ganvas.rng import PATH_LENGTH, STYLE_MIXING, SYNTHESIS_NOISE, per_sample, stream

if TYPE_CHECKING:
    from ganvas.config import TrainConfig

PL_DECAY = 0.01  # how fast the running mean of path lengths follows
PL_BATCH_SHRINK = 2  # the path length penalty runs on this fraction of the batch


class StyleGAN2Recipe(StandardRecipe):
    name = "stylegan2"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        options = self.spec.options
        self.mixing, self.pl_weight = options.style_mixing, options.pl_weight or 0.0
        self.pl_every = options.pl_every
        self.mixing_rng = stream(config.seed, STYLE_MIXING)
        self.synthesis_rng = stream(config.seed, SYNTHESIS_NOISE)
        self.path_length_rng = stream(config.seed, PATH_LENGTH)
        self.pl_mean = torch.zeros((), device=self.device)
        # Dmain's real batches of this step (one per accumulation pass), for Dreg.
        self._reals: tuple[int, list[torch.Tensor]] = (-1, [])
        # What the balance gate allowed this step: a network it holds back is not moved by
        # its regulariser either.
        self._allowed = {"G": True, "D": True}
        phases = [Phase("Dmain", ("D",))] * (config.n_critic - 1) + [Phase("Gmain", ("G",))]
        if self.pl_weight > 0:
            phases.append(Phase("Greg", ("G",), interval=self.pl_every))
        phases.append(Phase("Dmain", ("D",)))
        if config.r1_gamma > 0:
            phases.append(Phase("Dreg", ("D",), interval=config.r1_every))
        self.phases = phases
        self.correct_for_lazy_phases()

    def correct_for_lazy_phases(self) -> None:
        """Rates and betas for the lazy phases of the config (again after a resume, whose
        checkpoint holds the correction of the settings it was written with)."""
        c = self.config
        intervals = {"G": self.pl_every if self.pl_weight > 0 else None,
                     "D": c.r1_every if c.r1_gamma > 0 else None}
        for name, interval in intervals.items():
            lazy_correction(self.optimizers[name], interval, (c.beta1, c.beta2))

    def load_optimizers(self, state: dict[str, Any], where: str) -> None:
        super().load_optimizers(state, where)
        self.correct_for_lazy_phases()

    def set_betas(self, config: TrainConfig) -> None:
        self.config = config
        self.correct_for_lazy_phases()

    def accumulate_gradients(self, phase: Phase, inputs: StepInputs) -> list[str]:
        return {"Gmain": self._generator_main, "Greg": self._path_length,
                "Dmain": self._discriminator_main, "Dreg": self._r1}[phase.name](inputs)

    # ---- the generator ------------------------------------------------------------------

    def run_generator(self, z: torch.Tensor, c: torch.Tensor | None = None,
                      update_w_avg: bool = False, penalty: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (float32) and the styles they were drawn from (``c``: the labels of a
        conditional run). With probability ``style_mixing`` the layers from a random cutoff
        on take the styles of other latents (of the same classes), so no layer can count on
        its neighbours' style."""
        G = self.G
        z = z.to(self.device, non_blocking=True)
        ws = G.broadcast(G.mapping(z, c, update_w_avg=update_w_avg))  # float32, as in the paper
        cutoff = int(torch.randint(1, G.num_ws, (), generator=self.mixing_rng))
        if torch.rand((), generator=self.mixing_rng) < self.mixing:
            other = per_sample(lambda m: torch.randn(m, *z.shape[1:], generator=self.mixing_rng),
                               len(z)).to(self.device)
            ws = torch.cat([ws[:, :cutoff], G.broadcast(G.mapping(other, c))[:, cutoff:]],
                           dim=1)
        with self.penalty_pass() if penalty else self.forward_precision():
            images = G.synthesis(ws, "random", self.synthesis_rng)
        return images.float(), ws

    def _generator_main(self, inputs: StepInputs) -> list[str]:
        update = self._allowed["G"] = self.gate.update_generator()
        self.stats.report("G/skipped", 0.0 if update else 1.0)
        if not update:
            return []
        z = inputs.latents(inputs.batch_size).to(self.device, non_blocking=True)
        fake_c = self.paired(self.to_device(inputs.labels(inputs.batch_size)))
        fake, _ = self.run_generator(z, fake_c)
        real = real_c = None
        if self.criterion.relativistic:
            real, real_c = inputs.reals()
            real, real_c = self.family.real_input(self.spec, real, inputs.point), \
                self.to_device(real_c)
        self.generator_backward(fake, real, inputs.images_seen, fake_c=fake_c, real_c=real_c,
                                z=z)
        return ["G"]

    def _path_length(self, inputs: StepInputs) -> list[str]:
        if not self._allowed["G"]:
            return []
        n = max(1, inputs.batch_size // PL_BATCH_SHRINK)
        z = inputs.latents(n)
        fake, ws = self.run_generator(z, self.to_device(inputs.labels(n)), penalty=True)
        height, width = fake.shape[-2:]
        noise = per_sample(lambda m: torch.randn(m, *fake.shape[1:],
                                                 generator=self.path_length_rng),
                           len(fake)).to(self.device)
        noise = noise / math.sqrt(height * width)
        (grads,) = torch.autograd.grad((fake * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(2).mean(1).sqrt()
        mean = lengths.mean().detach()
        if self.strategy.distributed:  # the running mean of the whole batch, on every process
            mean = self.strategy.sum(mean) / self.strategy.world_size
        self.pl_mean = self.pl_mean.lerp(mean, PL_DECAY)
        penalty = (lengths - self.pl_mean).square().mean()
        self.backward(penalty * self.pl_weight * self.pl_every)
        self.stats.report("Loss/PL", penalty)
        self.stats.report("PL/mean", self.pl_mean)
        return ["G"]

    # ---- the discriminator --------------------------------------------------------------

    def _discriminator_main(self, inputs: StepInputs) -> list[str]:
        real, real_c = inputs.reals()
        real_c = self.to_device(real_c)
        if self._reals[0] != inputs.step:
            self._reals = (inputs.step, [])
        self._reals[1].append((real, real_c))
        z = inputs.latents(len(real))
        fake_c = self.to_device(inputs.labels(len(real)))
        with torch.no_grad():
            fake, _ = self.run_generator(z, fake_c, update_w_avg=True)
        total, _, _, update = self.discriminator_losses(
            self.family.real_input(self.spec, real, inputs.point), fake, inputs.step,
            inputs.images_seen, with_r1=False, real_c=real_c, fake_c=fake_c)
        self._allowed["D"] = update
        if update:
            self.backward(total)
        return ["D"] if update else []

    def _r1(self, inputs: StepInputs) -> list[str]:
        if not self._allowed["D"]:
            return []
        if self._reals[0] == inputs.step and self._reals[1]:
            real, real_c = self._reals[1].pop(0)
        else:  # no Dmain ran this step (a recipe order that changed)
            real, real_c = inputs.reals()
            real_c = self.to_device(real_c)
        real = self.family.real_input(self.spec, real, inputs.point)
        real = real.detach().requires_grad_(True)
        with self.penalty_pass():
            logits = self.discriminate_eagerly(self.view(real, inputs.images_seen), real_c)
        penalty = r1_penalty(logits, real)
        self.backward(penalty * (self.config.r1_gamma / 2) * self.config.r1_every)
        self.stats.report("Loss/R1", penalty)
        return ["D"]

    # ---- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stylegan2": {
            "pl_mean": float(self.pl_mean), "mixing_rng": self.mixing_rng.get_state(),
            "synthesis_rng": self.synthesis_rng.get_state(),
            "path_length_rng": self.path_length_rng.get_state()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        own = state.get("stylegan2")
        if own is None:
            return
        pl_mean = own["pl_mean"]
        if isinstance(pl_mean, bool) or not isinstance(pl_mean, (int, float)) \
                or not math.isfinite(pl_mean) or pl_mean < 0:
            raise ValueError(f"path length mean {pl_mean!r:.40}")
        self.pl_mean = torch.tensor(float(pl_mean), device=self.device)
        self.mixing_rng.set_state(own["mixing_rng"])
        self.synthesis_rng.set_state(own["synthesis_rng"])
        if own.get("path_length_rng") is not None:  # (checkpoints since 0.2 have their own)
            self.path_length_rng.set_state(own["path_length_rng"])


def lazy_correction(optimizer: torch.optim.Optimizer, interval: int | None,
                    betas: tuple[float, float]) -> None:
    """The rate and betas of an optimiser that also steps every ``interval`` steps for a
    regulariser (stylegan2's ``mb_ratio``): ``interval / (interval + 1)`` of the rate, the
    betas raised to that power; None: no lazy phase, the rate and betas as given."""
    ratio = 1.0 if interval is None else interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr_scale"] = ratio
        group["betas"] = tuple(beta**ratio for beta in betas)
