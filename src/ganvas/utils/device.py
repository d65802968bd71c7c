"""Choosing the compute device from a user's --device value."""

from __future__ import annotations

import contextlib
import platform

import torch

from ganvas.errors import GanvasError

_MATH_SETTLED = False


def settle_cpu_math() -> None:
    """Runs the math library's first elementwise call on one thread, once per process.

    PyTorch's CPU builds compute tanh, exp, log and their kin through MKL's vector math,
    which picks its kernels on the first call. When that first call is split between
    threads, one thread sometimes runs a less accurate kernel for it: in 6 of 40 fresh
    processes the first ``torch.tanh`` of 6,144 values on two threads was off by up to
    5e-5 relative (one ulp is 1e-7) on the half one thread computed. A resumed run then no
    longer matched the uninterrupted one. One call on a few values, which never splits,
    settles the choice for the whole process (0 in 110 processes after it).
    """
    global _MATH_SETTLED
    if not _MATH_SETTLED:
        with torch.no_grad():
            values = torch.linspace(0.1, 0.9, 8)
            for fn in (torch.exp, torch.tanh, torch.log, torch.sqrt, torch.sigmoid, torch.erf):
                fn(values)
        _MATH_SETTLED = True


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be usable here.

    Every command that computes comes through here first, so it also settles the CPU math
    library (:func:`settle_cpu_math`) before any real work."""
    settle_cpu_math()
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GanvasError(
            f"--device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GanvasError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise GanvasError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GanvasError(f"--device {name}: Apple MPS is not available here; "
                              "use --device cpu")
    elif device.type != "cpu":
        raise GanvasError(f"--device {name!r} is not supported; use auto, cpu, cuda or mps")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether this device multiplies bfloat16 in hardware (where mixed precision pays)."""
    if device.type == "cpu":
        try:  # oneDNN's own check; private, so guarded
            supported = bool(torch.backends.mkldnn.is_available()
                             and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
        # oneDNN also says yes on AVX-512 CPUs without bf16 instructions, where it emulates
        # them: there mixed precision ran 3.3x slower than float32 (projected D, 64 px) and
        # the lesson's DCGAN slower too. Where the CPU lists its flags, ask for the real ones.
        flags = cpu_flags()
        if flags is not None and platform.machine().lower() in ("x86_64", "amd64"):
            return supported and bool(flags & {"avx512_bf16", "amx_bf16"})
        return supported
    return False


def cpu_flags() -> set[str] | None:
    """The x86 CPU's feature flags from /proc/cpuinfo (Linux), or None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision`` on ``device``, or None for plain float32.

    ``auto`` turns bf16 on only where it was measured to pay: CPUs with native bf16 (about
    1.5x the float32 speed for the lesson's DCGAN on 2 cores). GPUs keep float32 unless asked.
    ``fp16`` is for GPUs (the recipe adds a gradient scaler); a CPU runs it, slowly.
    """
    if name == "fp32" or (name == "auto" and not native_bf16(device)):
        return None
    if name == "fp16":
        if device.type == "mps":
            raise GanvasError("--precision fp16 is not supported on Apple MPS; use "
                              "--precision fp32")
        return torch.float16
    if device.type == "mps":
        raise GanvasError("--precision bf16 is not supported on Apple MPS; use --precision fp32")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise GanvasError(f"--precision bf16: this GPU ({torch.cuda.get_device_name(device)}) "
                          "has no bfloat16 support; use --precision fp32")
    return torch.bfloat16


def autocast_off(device: torch.device):
    """A context with mixed precision off on ``device`` (for work that must stay float32)."""
    # Older PyTorch refuses autocast contexts, even disabled ones, on devices such as MPS
    # where it never runs mixed precision anyway.
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
