"""How a run is spread over processes: one process, or many started by ``torchrun``.

The strategy reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ...),
joins the process group (gloo on CPU, nccl on CUDA), and offers the few operations the
training loop needs: which process writes (rank 0), which slice of the global batch this
process trains on, gradients averaged once per update, buffers kept identical, statistics
summed over processes, and decisions taken on one process and shared, so processes never
drift apart or wait for each other forever.

Gradients are averaged by one all-reduce over a flat copy of a network's gradients before
its optimiser steps, as stylegan2-ada does, rather than by wrapping the networks in
``DistributedDataParallel``: DDP only synchronises gradients that flow from its wrapper's
``forward``, and a GAN's step calls its networks in other ways too (StyleGAN2's mapping and
synthesis, FastGAN's reconstruction, the penalties' extra passes), whose gradients would
silently stay local. With one explicit all-reduce per update every phase, penalty and
accumulated micro-batch is covered, and a phase the balance gate skips skips on every process.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from ganvas.errors import GanvasError
from ganvas.rng import current_slice

T = TypeVar("T")

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Long enough for rank 0's slowest housekeeping (an FID on CPU) while the others wait.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


class PeerLost(GanvasError):
    """Another process of the run stopped (killed, crashed, out of memory)."""


class LocalProblem(GanvasError):
    """A problem of this process alone (not of the options every process shares): it says so
    itself, whatever its rank."""


def launched_by_torchrun() -> bool:
    return all(key in os.environ for key in ENVIRONMENT)


class Strategy:
    """One process: every operation is the identity. See :class:`ProcessGroupStrategy`."""

    rank = 0
    world_size = 1
    local_rank = 0
    local_world_size = 1
    backend = "none"

    @property
    def is_main(self) -> bool:
        """The process that writes files and takes decisions."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: torch.device) -> torch.device:
        return requested

    # ---- collectives (no-ops here) ------------------------------------------------------------

    def barrier(self) -> None:
        pass

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of ``values`` over processes (float64 on CPU)."""
        return values

    def any(self, flag: bool) -> bool:
        """True on every process if it is true on any."""
        return flag

    def agree(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object), on every process."""
        return value

    def share(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0 only, its result on every process; a GanvasError raised there
        is raised on every process (rank 0 alone reports it)."""
        return make()

    def main_first(self, make: Callable[[], T]) -> T:
        """``make()`` on every process, the first process of each machine before the others
        (it fills a cache on that machine's disk; the rest then read it)."""
        return make()

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        pass

    def average_buffers(self, modules: Sequence[torch.nn.Module]) -> None:
        pass

    def broadcast_weights(self, modules: Sequence[torch.nn.Module]) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessGroupStrategy(Strategy):
    """Many processes in one ``torch.distributed`` process group, started by torchrun."""

    def __init__(self, device: torch.device):
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
        self._device = device
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise LocalProblem(
                    f"process {self.local_rank} of this machine has no GPU: only "
                    f"{torch.cuda.device_count()} here; start at most that many processes per "
                    "machine (--nproc / --nproc-per-node)")
            self._device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self._device)
            self.backend = "nccl"
        elif device.type == "cpu":
            self.backend = "gloo"
        else:
            raise GanvasError(f"--device {device.type}: training on several processes needs "
                              "CPUs (gloo) or CUDA GPUs (nccl)")
        # Whether every process met at a barrier after the last collective: only then can
        # leaving the group not wait on a peer (nccl's destroy finishes pending work).
        self._settled = True
        if not dist.is_initialized():
            try:
                dist.init_process_group(self.backend, timeout=COLLECTIVE_TIMEOUT,
                                        device_id=self._device if self.backend == "nccl"
                                        else None)
            except (RuntimeError, ValueError) as exc:
                raise GanvasError(f"could not join the other training processes at "
                                  f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} "
                                  f"({str(exc).splitlines()[0][:120]})") from None
            # Leave the group we joined while the interpreter is still whole. Left to the
            # interpreter's teardown, gloo's worker threads can outlive what they hold: the
            # process died of SIGABRT ("terminate called without an active exception")
            # after a run that finished well, and the launcher reported a failed run (1 in
            # 45 tiny two-process runs, three at once on 2 cores; none in 90 since).
            atexit.register(self._leave_at_exit)
        # Collectives of a CPU group carry CPU tensors, those of nccl CUDA tensors.
        self._comm = self._device if self.backend == "nccl" else torch.device("cpu")

    def _leave_at_exit(self) -> None:
        # After a failure a peer may still wait in a collective: exit without waiting.
        if self._settled:
            self.close()

    def device(self, requested: torch.device) -> torch.device:
        return self._device

    # ---- collectives --------------------------------------------------------------------------

    def _call(self, operation: Callable[[], T]) -> T:
        self._settled = False
        try:
            return operation()
        except (RuntimeError, dist.DistError) as exc:
            # Gloo reports a peer that died as a closed connection, nccl as an error or a
            # timeout; either way this process cannot go on.
            raise PeerLost(f"another process of this run stopped unexpectedly (killed, crashed "
                           f"or out of memory: see its own messages): "
                           f"{str(exc).splitlines()[0][:160]}") from None

    def barrier(self) -> None:
        self._call(lambda: dist.barrier())
        self._settled = True  # every process got here; nothing of ours is in flight

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if self.backend == "gloo" else torch.float32
        buffer = values.detach().to(self._comm, dtype).clone()
        self._call(lambda: dist.all_reduce(buffer))
        return buffer.to(values.device, values.dtype)

    def any(self, flag: bool) -> bool:
        return bool(self.sum(torch.tensor([1.0 if flag else 0.0])).item() > 0)

    def agree(self, value: T) -> T:
        box = [value if self.is_main else None]
        self._call(lambda: dist.broadcast_object_list(box, src=0, device=self._comm))
        return box[0]

    def share(self, make: Callable[[], T]) -> T:
        outcome: tuple[str, Any] = ("ok", None)
        if self.is_main:
            try:
                outcome = ("ok", make())
            except GanvasError as exc:
                outcome = ("error", str(exc))
        outcome = self.agree(outcome)
        if outcome[0] == "error":
            raise ReportedElsewhere(outcome[1]) if not self.is_main else GanvasError(outcome[1])
        return outcome[1]

    def main_first(self, make: Callable[[], T]) -> T:
        first = self.local_rank == 0
        result: T | None = None
        error: GanvasError | None = None
        if first:
            try:
                result = make()
            except GanvasError as exc:
                error = exc
        failed = self.any(error is not None)
        if failed:
            if error is not None:
                raise error
            raise ReportedElsewhere("another process could not load the data")
        if not first:
            try:
                result = make()
            except GanvasError as exc:  # (this machine's copy of the data, say)
                raise LocalProblem(str(exc)) from None
        self.barrier()
        return result  # type: ignore[return-value]

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        self._average([p.grad for p in params if p.grad is not None])

    def average_buffers(self, modules: Sequence[torch.nn.Module]) -> None:
        """Running statistics (StyleGAN2's ``w_avg``, BatchNorm's means) follow each process's
        slice of the batch; their average is what one process with the whole batch would
        hold (exactly for running means, which are linear in the batch)."""
        fixed = {id(getattr(part, name)) for m in modules for part in m.modules()
                 for name in getattr(part, "fixed_buffers", ())}
        self._average([b for m in modules for b in m.buffers()
                       if b.is_floating_point() and id(b) not in fixed])

    def _average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the processes, in place."""
        if not tensors:
            return
        # One flat buffer, one all-reduce: a few large messages beat many small ones.
        flat = torch.cat([t.reshape(-1).float() for t in tensors]).to(self._comm)
        self._call(lambda: dist.all_reduce(flat))
        flat /= self.world_size
        offset = 0
        for tensor in tensors:
            count = tensor.numel()
            tensor.copy_(flat[offset:offset + count].view_as(tensor))
            offset += count

    def broadcast_weights(self, modules: Sequence[torch.nn.Module]) -> None:
        """Rank 0's weights and buffers everywhere (they are built alike from the seed; this
        makes sure of it)."""
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                data = tensor.data.to(self._comm)
                self._call(lambda data=data: dist.broadcast(data, src=0))
                if data is not tensor.data:
                    tensor.data.copy_(data)

    def close(self) -> None:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except (RuntimeError, ValueError):
                pass


class ReportedElsewhere(GanvasError):
    """An error rank 0 has already reported; other processes exit without repeating it."""


_CURRENT: Strategy | None = None


def process_rank() -> int:
    """This process's rank in its run (0 when alone or before the group is joined, unless
    torchrun said otherwise)."""
    if _CURRENT is not None:
        return _CURRENT.rank
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


def current_strategy(device: torch.device) -> Strategy:
    """The strategy of this process (joined once, then reused): torchrun's process group when
    it started more than one process, else a single process."""
    global _CURRENT
    if _CURRENT is None:
        if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
            _CURRENT = ProcessGroupStrategy(device)
        else:
            _CURRENT = Strategy()
    return _CURRENT


# ---- BatchNorm over the global batch ------------------------------------------------------------


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm that, inside a training step spread over processes, normalises with the
    mean and variance of the whole global batch (the processes exchange per-channel sums),
    so a run on N processes computes what one process with the whole batch would.

    torch's own SyncBatchNorm runs only on GPUs; this one runs wherever the process group
    does (gloo on CPU too). Its weights and buffers have BatchNorm's names, so checkpoints
    and exported generators are unchanged. Outside a sliced training step (sampling,
    evaluation, the EMA's own passes) it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or current_slice()[1] == 1 or not dist.is_initialized():
            return super().forward(x)
        channels, dims = x.shape[1], [0, *range(2, x.dim())]
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.square().sum(dims),
                           xf.new_tensor([xf.numel() / channels])]).double()
        total = dist_nn.all_reduce(local)  # differentiable: gradients flow to every slice
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels:2 * channels] / count - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                          else self.momentum)
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (xf - mean.float().view(shape)) * torch.rsqrt(var.float().view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def globalise_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm layer of ``module`` by a :class:`GlobalBatchNorm` with the same
    weights and statistics; returns how many were replaced."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            synced = GlobalBatchNorm(child.num_features, child.eps, child.momentum,
                                     child.affine, child.track_running_stats)
            synced.load_state_dict(child.state_dict())
            setattr(module, name, synced)
            replaced += 1
        else:
            replaced += globalise_batchnorm(child)
    return replaced
