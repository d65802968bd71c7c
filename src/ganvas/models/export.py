"""The exportable generator folder: ``config.json`` + ``model.safetensors``.

This is what you share: it holds only the generator (no optimiser or discriminator), loads
without pickle, and carries the architecture settings needed to rebuild the network.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ganvas.errors import GanvasError
from ganvas.models.registry import build_generator
from ganvas.utils.files import atomic_write_text

FORMAT = "ganvas-generator"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The subset of a training config that defines the generator's shape."""
    return {k: config[k] for k in ("model", "resolution", "channels", "latent_dim",
                                   "model_options")}


def save_generator(folder: str | os.PathLike, generator: nn.Module,
                   config: dict[str, Any], **extra: Any) -> Path:
    """Write the generator folder; an existing one is replaced only once the new one is whole."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_NAME))
        meta = {"format": FORMAT, "version": VERSION, **architecture(config), **extra,
                "train_config": config}
        atomic_write_text(staging / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_generator(folder: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a generator from its folder; returns ``(generator, config)``."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GanvasError(f"{folder}: no {CONFIG_NAME}; not a ganvas generator folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GanvasError(f"{config_path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GanvasError(f"{config_path}: not a ganvas generator config")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise GanvasError(f"{config_path}: format version {meta.get('version')!r} is newer "
                          "than this ganvas understands; upgrade ganvas")
    generator = build_from_config(meta, str(config_path))
    try:
        state = load_file(str(weights_path))
    except FileNotFoundError:
        raise GanvasError(f"{folder}: no {WEIGHTS_NAME} beside {CONFIG_NAME}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanvasError(f"{weights_path}: not readable safetensors weights "
                          f"({str(exc)[:100]})") from None
    load_weights(generator, state, str(weights_path))
    return generator, meta


def build_from_config(config: dict[str, Any], where: str) -> nn.Module:
    try:
        arch = architecture(config)
    except KeyError as exc:
        raise GanvasError(f"{where}: missing the setting {exc}") from None
    for key in ("resolution", "channels", "latent_dim"):
        if not isinstance(arch[key], int) or isinstance(arch[key], bool) or arch[key] < 1:
            raise GanvasError(f"{where}: invalid {key} {arch[key]!r}")
    if not isinstance(arch["model_options"], dict) or not isinstance(arch["model"], str):
        raise GanvasError(f"{where}: invalid model settings")
    try:
        return build_generator(arch["model"], resolution=arch["resolution"],
                               channels=arch["channels"], latent_dim=arch["latent_dim"],
                               options=arch["model_options"])
    except GanvasError as exc:
        raise GanvasError(f"{where}: {exc}") from None


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict`` that reports missing, unexpected and mis-shaped keys in one line."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", wrong)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        raise GanvasError(f"{where}: weights do not fit the architecture ({'; '.join(parts)})")
    module.load_state_dict(state)
