"""A styliser folder: ``styliser.safetensors`` + ``styliser.json`` for inference, and the
training checkpoint ``checkpoint.pt`` beside them. The description says which kind of
network it holds: ``per-style`` (:class:`Styliser`) or ``arbitrary`` (encoder + decoder,
:class:`ArbitraryStyliser`). Every file is written atomically and read with one clear line
for anything that is not what ganvas wrote."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ganvas.errors import GanvasError
from ganvas.models.export import check_version
from ganvas.runs.checkpoint import refuse_zip_bomb
from ganvas.style.backbones import empty_backbone
from ganvas.stylisers.arbitrary import ENCODER_LAYERS, ArbitraryStyliser
from ganvas.stylisers.network import WIDTHS, Styliser
from ganvas.utils.files import atomic_write, atomic_write_text, default_mode

FORMAT = "ganvas-styliser"
VERSION = 1
WEIGHTS_NAME, META_NAME = "styliser.safetensors", "styliser.json"
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "ganvas-styliser-checkpoint"
MAX_META_BYTES = 1 << 20
KIND_PER_STYLE, KIND_ARBITRARY = "per-style", "arbitrary"


def write_styliser(folder: Path, net: torch.nn.Module, meta: dict[str, Any]) -> None:
    """The weights (safetensors) and what they are (JSON), each replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    temporary = folder / f".{WEIGHTS_NAME}.tmp"
    save_file(state, str(temporary))
    os.chmod(temporary, default_mode())
    os.replace(temporary, folder / WEIGHTS_NAME)
    atomic_write_text(folder / META_NAME, json.dumps(
        {"format": FORMAT, "version": VERSION, **meta}, indent=2) + "\n")


def load_styliser(folder: str | os.PathLike
                  ) -> tuple[Styliser | ArbitraryStyliser, dict[str, Any]]:
    """The network of a folder written by ``ganvas style-train``, in eval mode; the
    description's ``kind`` says which one it is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GanvasError(f"--model {folder}: no such styliser folder" if not folder.exists()
                          else f"--model {folder}: not a folder; give the folder that "
                          "`ganvas style-train -o` wrote")
    meta_path, weights_path = folder / META_NAME, folder / WEIGHTS_NAME
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise GanvasError(f"--model {folder}: no {path.name}; not a styliser folder "
                              "(train one with `ganvas style-train`)")
    if meta_path.stat().st_size > MAX_META_BYTES:
        raise GanvasError(f"{meta_path}: too large for a styliser description")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GanvasError(f"{meta_path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GanvasError(f"{meta_path}: not a ganvas styliser description")
    check_version(meta.get("version"), VERSION, str(meta_path))
    width = meta.get("width")
    if width not in WIDTHS:
        raise GanvasError(f"{meta_path}: unknown network width {width!r:.40}")
    kind = meta.setdefault("kind", KIND_PER_STYLE)
    if kind == KIND_PER_STYLE:
        net: torch.nn.Module = Styliser(width)
    elif kind == KIND_ARBITRARY:
        backbone = meta.get("backbone")
        if backbone not in ENCODER_LAYERS:
            raise GanvasError(f"{meta_path}: unknown encoder {backbone!r:.40}")
        net = ArbitraryStyliser(empty_backbone(backbone), half=width == 16)
    else:
        raise GanvasError(f"{meta_path}: unknown kind of styliser {kind!r:.40}")
    try:
        state = load_file(str(weights_path))
        net.load_state_dict(state)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanvasError(f"{weights_path}: not the weights of this styliser "
                          f"({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})"
                          ) from None
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise GanvasError(f"{weights_path}: the weights hold NaN or infinity")
    return net.eval(), meta


def write_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_write(path) as handle:
        torch.save({"format": CHECKPOINT_FORMAT, "version": VERSION, **payload}, handle)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, loaded with ``weights_only=True`` after checking it is one."""
    if not path.is_file():
        raise GanvasError(f"--resume: {path} is missing; not a styliser in training"
                          if not path.exists() else f"--resume: {path} is not a file")
    if not zipfile.is_zipfile(path):  # every torch.save since PyTorch 1.6 is a zip archive
        raise GanvasError(f"{path}: not a readable checkpoint (corrupt or truncated?)")
    refuse_zip_bomb(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise GanvasError(f"{path}: refusing to load: it holds Python objects, not just "
                          "tensors (not written by ganvas)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, KeyError,
            AttributeError, TypeError, IndexError, MemoryError) as exc:
        raise GanvasError(f"{path}: not a readable checkpoint (corrupt or truncated? "
                          f"{type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GanvasError(f"{path}: not a styliser checkpoint")
    check_version(payload.get("version"), VERSION, str(path))
    step = payload.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise GanvasError(f"{path}: the step count is damaged")
    network = payload.get("network")
    if not isinstance(network, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in network.items()):
        raise GanvasError(f"{path}: the network weights are damaged")
    if not isinstance(payload.get("optimizer"), dict):
        raise GanvasError(f"{path}: the optimiser state is damaged")
    return payload
