"""The standard recipe: one adversarial criterion, its penalties, augmentation and balance.

This is the lesson's training step grown up. Each step is either the simultaneous update
(one forward of D on the fakes serves both players' losses, both step from the same
position, as TensorFlow's DCGAN tutorial does with two gradient tapes) or the alternating
one (D steps, then G steps against the updated D through a second forward of D), after
``n_critic - 1`` extra discriminator updates. Every family whose discriminator scores what
its generator's ``forward`` returns (an image, or a pyramid of them) trains with it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ganvas.augment import NoAugment, build_augment
from ganvas.config import TrainConfig
from ganvas.distributed import Strategy
from ganvas.errors import GanvasError
from ganvas.losses.balance import BalanceGate
from ganvas.losses.criteria import get_loss
from ganvas.losses.recipe import (
    LossRecipe,
    Phase,
    StepInputs,
    adam,
    complete_groups,
    precision_context,
)
from ganvas.losses.regularizers import drift_penalty, gradient_penalty, r1_penalty
from ganvas.models.networks import scores_are_independent
from ganvas.rng import AUGMENT, NOISE, PENALTY, per_sample, stream, stream_seed
from ganvas.utils import nested
from ganvas.utils.nested import Images

# Images with the labels of a conditional run (None: unconditional).
Labelled = tuple[Images, torch.Tensor | None]


class StandardRecipe(LossRecipe):
    """Args:
        config: the run's resolved TrainConfig.
        generator, discriminator: the networks (on ``device``).
        family, spec: the model family and its spec (for ``real_input``).
        stats: the statistics channel (``report(name, value)``).
        autocast_dtype: bf16 for mixed precision, None for float32.
        strategy: the processes the run is spread over (their statistics are pooled where a
            decision depends on them: the balance gate, ADA's p).
    """

    name = "standard"
    # True for a recipe whose D has a task of its own on the reals (see score_reals).
    has_real_objective = False

    def __init__(self, config: TrainConfig, *, generator: torch.nn.Module,
                 discriminator: torch.nn.Module, family, spec, stats, device: torch.device,
                 autocast_dtype: torch.dtype | None, strategy: Strategy | None = None):
        c = self.config = config
        self.strategy = strategy or Strategy()
        self.G, self.D, self.family, self.spec, self.stats = (
            generator, discriminator, family, spec, stats)
        self.device = device
        self.forward_precision = precision_context(device, autocast_dtype)
        # float16's narrow range needs the losses scaled up before their gradients are taken
        # (a gradient scaler), and gradients of gradients (R1, the gradient penalty, path
        # length) taken in float32: they are squared, and float16 would flush them to zero.
        half = autocast_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(device.type) if half else None
        penalty_precision = contextlib.nullcontext if half else self.forward_precision
        # Compiled graphs cannot be differentiated twice: penalties run the networks eagerly.
        self.compiled = bool(c.compile)
        self.separate_r1_pass = half or self.compiled

        @contextlib.contextmanager
        def penalty_pass():
            with contextlib.ExitStack() as stack:
                stack.enter_context(penalty_precision())
                if self.compiled:
                    stack.enter_context(torch.compiler.set_stance("force_eager"))
                yield

        self.penalty_pass = penalty_pass
        self.criterion = get_loss(c.loss, c.label_smoothing)
        self.gp_weight = (c.gp_weight if c.gp_weight is not None
                          else 10.0 if self.criterion.needs_gradient_penalty else 0.0)
        self.drift_weight = c.drift or 0.0
        self.mode_seeking = (c.mode_seeking if c.mode_seeking is not None
                             else 1.0 if c.conditional else 0.0)
        self.gate = BalanceGate(c.d_skip_below, c.d_accuracy_band)
        self.augment = build_augment(c.augment, seed=stream_seed(c.seed, AUGMENT),
                                     diffaugment_policy=c.diffaugment_policy,
                                     ada_target=c.ada_target, ada_kimg=c.ada_kimg,
                                     sum_over_processes=self.strategy.sum)
        self.noise_rng = stream(c.seed, NOISE)
        self.penalty_rng = stream(c.seed, PENALTY)
        betas = (c.beta1, c.beta2)
        self.optimizers = {"G": adam(generator, c.lr_g, betas),
                           "D": adam(discriminator, c.lr_d, betas)}
        both = ("D", "G")
        extra = [Phase("D", ("D",))] * (c.n_critic - 1)
        self.phases = extra + ([Phase("GD", both)] if c.update == "simultaneous"
                               else [Phase("D", ("D",), keep_fakes=True), Phase("G", ("G",))])
        # (reals, fakes) of each pass of the D phase, with their graph, for the G phase.
        self._kept: list[tuple[Labelled, Labelled, torch.Tensor]] = []
        self._latents: torch.Tensor | None = None  # of the last batch of fakes drawn

    # ---- phases ---------------------------------------------------------------------------

    def accumulate_gradients(self, phase: Phase, inputs: StepInputs) -> list[str]:
        if phase.name == "GD":
            return self._joint(inputs)
        if phase.name == "D":
            return self._discriminator(inputs, phase.keep_fakes)
        return self._generator(inputs)

    def _draw(self, inputs: StepInputs, keep_graph: bool) -> tuple[Labelled, Labelled]:
        """A batch of reals, shown the way the family's D takes them, and one of fakes, each
        with its labels (None: unconditional)."""
        real, real_c = inputs.reals()
        z = inputs.latents(len(real)).to(self.device, non_blocking=True)
        fake_c = self.paired(self.to_device(inputs.labels(len(real))))
        with torch.set_grad_enabled(keep_graph), self.forward_precision():
            fake = self.generate(z, fake_c)
        # Augmentation, noise, penalties and monitors all see float32 images.
        fake = nested.apply(lambda t: t.float(), fake)
        self._latents = z  # for the mode-seeking term of the G loss that follows
        return ((self.family.real_input(self.spec, real, inputs.point), self.to_device(real_c)),
                (fake, fake_c))

    # ---- the mode-seeking regulariser (Mao et al. 2019, MSGAN) -----------------------------

    def paired(self, c: torch.Tensor | None) -> torch.Tensor | None:
        """Labels for generated images with the mode-seeking term on: each odd image takes
        the class of the even one before it, so every pair shows one class from two
        latents. (Neighbours, not halves: a batch split among processes keeps its pairs.)"""
        if c is None or not self.mode_seeking or len(c) < 2:
            return c
        c = c.clone()
        c[1:len(c) // 2 * 2:2] = c[0:len(c) // 2 * 2:2]
        return c

    def mode_seeking_loss(self, fake: Images, z: torch.Tensor | None) -> torch.Tensor | None:
        """The inverse of how much the pictures of each pair differ per unit their latents
        differ, averaged: small when the generator draws as many pictures of a class as it
        has latents, large when it draws one picture whatever the latent (a conditional
        generator's usual way to collapse: the class alone picks a prototype). None when
        off."""
        if not self.mode_seeking or z is None:
            return None
        image = nested.tensors(fake)[-1]  # the finished picture (MSG: the finest scale)
        pairs = len(image) // 2 * 2
        if pairs < 2:
            return None
        a, b = image[0:pairs:2], image[1:pairs:2]
        z = z.flatten(1)
        ratio = ((a - b).abs().flatten(1).mean(1)
                 / (z[0:pairs:2] - z[1:pairs:2]).abs().mean(1).clamp_min(1e-8))
        # The term is 1 / (the mean ratio over the pairs of the whole global batch). Each
        # process holds a slice, and gradients are averaged over the processes, so each
        # builds the whole batch's value and, as the gradient of its local mean scaled by
        # the derivative at the global mean, its share of the whole batch's gradient: the
        # run does not depend on the number of processes (one process: the same term).
        total = self.strategy.sum(torch.stack([ratio.detach().sum().double(),
                                               torch.tensor(float(len(ratio)),
                                                            dtype=torch.float64,
                                                            device=ratio.device)]))
        mean = (total[0] / total[1]).to(ratio.dtype)
        local = ratio.mean()
        loss = 1 / (mean + 1e-5) - (local - local.detach()) / (mean + 1e-5) ** 2
        self.stats.report("Loss/mode_seeking", loss.detach())
        return self.mode_seeking * loss

    def to_device(self, c: torch.Tensor | None) -> torch.Tensor | None:
        return None if c is None else c.to(self.device, non_blocking=True)

    def generate(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Images:
        """G's training output for latents ``z`` and labels ``c`` (what its D takes)."""
        return self.G(z) if c is None else self.G(z, c)

    def _discriminator(self, inputs: StepInputs, keep_fakes: bool) -> list[str]:
        """D alone on a batch of real and (detached) generated images. The last one before
        an alternating G phase keeps its fakes, with their graph, for it."""
        (real, real_c), (fake, fake_c) = self._draw(inputs, keep_graph=keep_fakes)
        if keep_fakes:
            self._kept.append(((real, real_c), (fake, fake_c), self._latents))
        total, _, _, update = self.discriminator_losses(
            real, nested.apply(torch.Tensor.detach, fake), inputs.step, inputs.images_seen,
            real_c=real_c, fake_c=fake_c)
        if update:
            self.backward(total)
        return ["D"] if update else []

    def backward(self, loss: torch.Tensor, **options: Any) -> None:
        """``loss.backward(**options)``, scaled for float16 training."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward(**options)

    def step_optimizer(self, name: str) -> None:
        """Step one optimiser (through the gradient scaler in float16: it unscales, and skips
        a step whose gradients overflowed)."""
        optimizer = self.optimizers[name]
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def end_step(self) -> None:
        """After all phases of a step: the scaler adapts its scale once per step, and the
        augmentation's strength (which its discriminator passes adjusted) is reported."""
        if self.scaler is not None:
            self.scaler.update()
        if not isinstance(self.augment, NoAugment):
            self.stats.gauge("Augment/p", round(self.augment.p, 5))

    def _generator(self, inputs: StepInputs) -> list[str]:
        """With D frozen, make D call the kept fakes real (alternating update)."""
        if not self._kept:
            raise GanvasError("internal: the generator phase needs a discriminator phase "
                              "that keeps its fakes before it")
        (real, real_c), (fake, fake_c), z = self._kept.pop(0)
        update = self.gate.update_generator()
        if update:
            self.generator_backward(fake, real if self.criterion.relativistic else None,
                                    inputs.images_seen, fake_c=fake_c, real_c=real_c, z=z)
        self.stats.report("G/skipped", 0.0 if update else 1.0)
        return ["G"] if update else []

    def generator_backward(self, fake: Images, real: Images | None, images_seen: int, *,
                           fake_c: torch.Tensor | None = None,
                           real_c: torch.Tensor | None = None,
                           z: torch.Tensor | None = None) -> None:
        """G's loss against a frozen D, differentiated into G (``real``: the reals a
        relativistic criterion compares with, else None; ``*_c``: their labels; ``z``: the
        fakes' latents, for the mode-seeking term)."""
        self.D.requires_grad_(False)
        try:
            fake_logits = self.discriminate(self.view(fake, images_seen), fake_c)
            real_logits = (self.discriminate(self.view(real, images_seen), real_c)
                           if real is not None else None)
            loss = self.criterion.generator_loss(fake_logits, real_logits)
            seeking = self.mode_seeking_loss(fake, z)
            self.backward(loss if seeking is None else loss + seeking)
        finally:
            self.D.requires_grad_(True)
        self.stats.report("Grad/G", grad_norm(self.G))
        self.stats.report("Loss/G", loss)

    def _joint(self, inputs: StepInputs) -> list[str]:
        """Both players from one forward of D on the fakes: D's loss is differentiated for
        D's weights only, G's loss for G's weights only, and both step from the same
        position."""
        (real, real_c), (fake, fake_c) = self._draw(inputs, keep_graph=True)
        total, fake_logits, real_logits, update_d = self.discriminator_losses(
            real, fake, inputs.step, inputs.images_seen, real_c=real_c, fake_c=fake_c)
        update_g = self.gate.update_generator()
        loss_g = self.criterion.generator_loss(
            fake_logits, real_logits if self.criterion.relativistic else None)
        seeking = self.mode_seeking_loss(fake, self._latents)
        if seeking is not None:
            loss_g = loss_g + seeking
        d_params = [p for p in self.D.parameters() if p.requires_grad]
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        # Both backward passes read the same graph, so no weight may change before both ran.
        if update_d:
            self.backward(total, inputs=d_params, retain_graph=update_g)
        if update_g:
            self.backward(loss_g, inputs=g_params)
            self.stats.report("Grad/G", grad_norm(self.G))
        self.stats.report("Loss/G", loss_g)
        self.stats.report("G/skipped", 0.0 if update_g else 1.0)
        return [name for name, ok in (("D", update_d), ("G", update_g)) if ok]

    # ---- the discriminator's loss ---------------------------------------------------------

    def discriminator_losses(self, real: Images, fake: Images, step: int, images_seen: int,
                             *, with_r1: bool = True, real_c: torch.Tensor | None = None,
                             fake_c: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """D's loss with its penalties, its statistics, and whether the gate lets it update.

        Returns ``(loss to minimise, logits on the fakes, logits on the reals, update)``.
        ``fake`` may carry G's graph (the simultaneous update); penalties never
        differentiate into G. ``with_r1=False`` leaves lazy R1 to a phase of its own.
        ``real_c``/``fake_c``: the labels of a conditional run (the gradient penalty scores
        its mixed images with the reals' labels).
        """
        c, D = self.config, self.D
        lazy_r1 = with_r1 and c.r1_gamma > 0 and step % c.r1_every == 0
        if lazy_r1:  # R1 differentiates D with respect to the (un-augmented) real images
            real = nested.apply(lambda t: t.detach().requires_grad_(True), real)
        real_seen = self.view(real, images_seen)
        fake_seen = self.view(fake, images_seen)
        n = nested.batch_size(real_seen)
        real_objective = None
        if not self.has_real_objective and n == nested.batch_size(fake_seen) \
                and scores_are_independent(D, n):
            # One forward of twice the batch uses the CPU better than two (about 9 % of a
            # step for the lesson's DCGAN); when each image's score is independent of the
            # others, nothing but speed changes.
            both_c = None if real_c is None else torch.cat([real_c, fake_c])
            real_logits, fake_logits = self.discriminate(
                nested.cat(real_seen, fake_seen), both_c).chunk(2)
        else:
            real_logits, real_objective = self.score_reals(real_seen, real_c)
            fake_logits = self.discriminate(fake_seen, fake_c)
        loss_d = self.criterion.discriminator_loss(real_logits, fake_logits)
        total = loss_d if real_objective is None else loss_d + real_objective
        if self.gp_weight:  # its own forward of D, outside autocast: a gradient norm in float32
            with torch.compiler.set_stance("force_eager") if self.compiled \
                    else contextlib.nullcontext():
                critic = D if real_c is None else (lambda images: D(images, real_c))
                penalty = gradient_penalty(critic, real_seen,
                                           nested.apply(torch.Tensor.detach, fake_seen),
                                           generator=self.penalty_rng)
            total = total + self.gp_weight * penalty
            self.stats.report("Loss/GP", penalty)
        if self.drift_weight:
            total = total + self.drift_weight * drift_penalty(real_logits)
        if lazy_r1:
            logits = real_logits
            if self.separate_r1_pass:  # its own (float32, eager) pass of D on the same images
                with self.penalty_pass():
                    logits = self.discriminate_eagerly(real_seen, real_c)
            penalty = r1_penalty(logits, real)
            total = total + (c.r1_gamma / 2) * c.r1_every * penalty
            self.stats.report("Loss/R1", penalty)
        real_detached, fake_detached = real_logits.detach(), fake_logits.detach()
        real_margin, fake_margin = self.criterion.margins(real_detached, fake_detached)
        self.augment.observe(real_margin)
        accuracy = ((real_margin > 0).float().mean() + (fake_margin <= 0).float().mean()) / 2
        gate_loss, gate_accuracy = loss_d.detach(), accuracy
        if self.gate.active and self.strategy.distributed:  # one decision for all processes
            pooled = self.strategy.sum(torch.stack([gate_loss.float(), accuracy.float()]))
            gate_loss, gate_accuracy = pooled / self.strategy.world_size
        update = self.gate.update_discriminator(gate_loss, gate_accuracy)
        self.stats.report("Loss/D", loss_d)
        self.stats.report("D/accuracy", accuracy)
        self.stats.report("D/skipped", 0.0 if update else 1.0)
        to_score = torch.sigmoid if self.criterion.probabilistic else (lambda t: t)
        self.stats.report("D/real", to_score(real_detached))
        # ADA's overfitting heuristic r_t = E[sign(D(x) - boundary)], for every run.
        self.stats.report("D/real_sign", torch.sign(real_margin))
        self.stats.report("D/fake", to_score(fake_detached))
        return total, fake_logits, real_logits, update

    def score_reals(self, real_seen: Images, real_c: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's logits on the reals it sees and, for recipes with ``has_real_objective``, a
        loss of D's own on them from the same forward pass (None here)."""
        return self.discriminate(real_seen, real_c), None

    def discriminate(self, images: Images, c: torch.Tensor | None = None) -> torch.Tensor:
        """D's float32 logits for what it sees (and the labels ``c`` of a conditional run),
        its forward in the training precision."""
        with self.forward_precision():
            return self.discriminate_eagerly(images, c)

    def score_images(self, images: Images, c: torch.Tensor | None = None) -> torch.Tensor:
        """One float32 score per image, the mean of D's logits for it (the projected
        discriminator's loss takes one per head), in the training precision."""
        return self.discriminate(images, c).reshape(nested.batch_size(images), -1).mean(1)

    def discriminate_eagerly(self, images: Images, c: torch.Tensor | None) -> torch.Tensor:
        """D's float32 logits in whatever precision the caller set."""
        return (self.D(images) if c is None else self.D(images, c)).float()

    def view(self, images: Images, images_seen: int) -> Images:
        """What D sees of a batch: augmented (the same transform at every scale), plus
        instance noise decaying with the images seen."""
        images = self.augment(images)
        sigma = self.instance_noise_sigma(images_seen)
        if self.config.instance_noise:
            self.stats.gauge("Noise/sigma", round(sigma, 5))
        if sigma > 0:
            def noisy(t: torch.Tensor) -> torch.Tensor:
                noise = per_sample(lambda m: torch.randn(m, *t.shape[1:],
                                                         generator=self.noise_rng), len(t))
                return t + sigma * noise.to(t.device, t.dtype)

            images = nested.apply(noisy, images)
        return images

    def instance_noise_sigma(self, images_seen: int) -> float:
        """Linear decay to 0 over ``--instance-noise-steps`` steps of the base batch."""
        c = self.config
        if not c.instance_noise:
            return 0.0
        return c.instance_noise * max(0.0, 1.0 - images_seen / (c.instance_noise_steps
                                                                * c.batch_size))

    # ---- learning rates -------------------------------------------------------------------

    def apply_schedule(self, lr_scale: float) -> None:
        """Rates in use = the base rates times the schedule's multiplier."""
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * group["lr_scale"] * lr_scale

    def set_learning_rates(self, *, g: float | None = None, d: float | None = None,
                           lr_scale: float = 1.0) -> None:
        for name, lr in (("G", g), ("D", d)):
            if lr is not None:
                for group in self.optimizers[name].param_groups:
                    group["base_lr"] = lr
        self.apply_schedule(lr_scale)

    def set_betas(self, config: TrainConfig) -> None:
        """Adam's betas of ``config`` (which becomes this recipe's) for both optimisers."""
        self.config = config
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["betas"] = (config.beta1, config.beta2)

    @property
    def learning_rates(self) -> tuple[float, float]:
        return (self.optimizers["G"].param_groups[0]["base_lr"],
                self.optimizers["D"].param_groups[0]["base_lr"])

    # ---- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Stored at the top level of a checkpoint (the keys it has always had)."""
        return {"opt_g": self.optimizers["G"].state_dict(),
                "opt_d": self.optimizers["D"].state_dict(),
                "augment": self.augment.state_dict(),
                "balance": self.gate.state_dict(),
                "noise_rng": self.noise_rng.get_state(),
                "penalty_rng": self.penalty_rng.get_state(),
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})}

    def load_optimizers(self, state: dict[str, Any], where: str) -> None:
        """Part one of restoring (before the data is loaded, so a bad file fails fast)."""
        try:
            self.optimizers["G"].load_state_dict(state["opt_g"])
            self.optimizers["D"].load_state_dict(state["opt_d"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise GanvasError(f"{where}: optimiser state does not fit the networks "
                              f"({type(exc).__name__}: {str(exc)[:100]})") from None
        for optimizer in self.optimizers.values():
            complete_groups(optimizer)
            check_optimizer(optimizer, where)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Part two: augmentation, balance and noise (raises ValueError/KeyError/TypeError
        on damaged values; the trainer words them)."""
        if state.get("augment"):
            self.augment.load_state_dict(state["augment"])
        if state.get("balance"):
            self.gate.load_state_dict(state["balance"])
        if state.get("noise_rng") is not None:
            self.noise_rng.set_state(state["noise_rng"])
        if state.get("penalty_rng") is not None:  # (checkpoints since 0.2 have their own)
            self.penalty_rng.set_state(state["penalty_rng"])
        if self.scaler is not None and state.get("scaler"):
            saved = state["scaler"]
            limits = {"scale": (0, 2.0**64), "growth_factor": (1, 1e3),
                      "backoff_factor": (0, 1), "growth_interval": (0, 2**31),
                      "_growth_tracker": (-1, 2**31)}
            for key, (low, high) in limits.items():
                value = saved.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not low < value < high:
                    raise ValueError(f"gradient scaler {key} {value!r:.30}")
            self.scaler.load_state_dict(saved)


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(norms).norm() if norms else torch.zeros(())


def check_optimizer(optimizer: torch.optim.Optimizer, where: str) -> None:
    """Adam's settings and moments must be sane, or the first step fails obscurely."""
    for group in optimizer.param_groups:
        lr, base, betas, eps = (group.get(k) for k in ("lr", "base_lr", "betas", "eps"))
        scale = group.get("lr_scale")
        sane = (all(isinstance(v, (int, float)) and 0 < v <= 10 for v in (lr, base))
                and isinstance(scale, (int, float)) and 0 < scale <= 1000
                and isinstance(betas, (list, tuple)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
                and isinstance(eps, (int, float)) and 0 < eps < 1)
        if not sane:
            raise GanvasError(f"{where}: optimiser settings are damaged (lr, betas or eps)")
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if (isinstance(value, torch.Tensor) and value.dim() > 0
                        and value.shape != param.shape):
                    raise GanvasError(f"{where}: optimiser state '{name}' does not fit the "
                                      "network (damaged checkpoint)")
                if isinstance(value, torch.Tensor) and not torch.isfinite(value).all():
                    raise GanvasError(f"{where}: optimiser state '{name}' holds NaN or "
                                      "infinity (damaged checkpoint)")
                if name == "step" and (float(value) < 0 or not float(value).is_integer()):
                    raise GanvasError(f"{where}: optimiser step count is damaged")
