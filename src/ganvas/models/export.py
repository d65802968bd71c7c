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
from ganvas.utils.files import atomic_write_text, default_mode

MAX_CONFIG_BYTES = 10_000_000
FORMAT = "ganvas-generator"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The subset of a training config that defines the generator's shape (the classes of a
    conditional model too: their number sizes its label input)."""
    return {**{k: config[k] for k in ("model", "resolution", "channels", "latent_dim",
                                      "model_options")},
            "classes": config.get("classes") or [], "aspect": config.get("aspect")}


def save_generator(folder: str | os.PathLike, generator: nn.Module,
                   config: dict[str, Any], **extra: Any) -> Path:
    """Write the generator folder; an existing one is replaced only once the new one is whole."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GanvasError(f"{folder}: a file is in the way of the generator folder; move it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(staging, default_mode(directory=True))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_NAME))
        os.chmod(staging / WEIGHTS_NAME, default_mode())
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
    for path in (config_path, weights_path):
        if not path.exists():
            raise GanvasError(f"{folder}: no {path.name}; not a ganvas generator folder")
        if not path.is_file():  # a FIFO or device would block or never end
            raise GanvasError(f"{path}: not a regular file")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise GanvasError(f"{config_path}: too large for a generator config")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GanvasError(f"{config_path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GanvasError(f"{config_path}: not a ganvas generator config")
    check_version(meta.get("version"), VERSION, str(config_path))
    generator = build_from_config(meta, str(config_path))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise GanvasError(f"{weights_path}: not readable safetensors weights "
                          f"({str(exc)[:100]})") from None
    load_weights(generator, state, str(weights_path))
    return generator, meta


def check_version(version: Any, supported: int, where: str) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise GanvasError(f"{where}: not a valid ganvas file (missing or invalid format "
                          "version)")
    if version > supported:
        raise GanvasError(f"{where}: format version {version} is newer than this ganvas "
                          f"understands ({supported}); upgrade ganvas")


def build_from_config(config: dict[str, Any], where: str) -> nn.Module:
    """Rebuild a generator from saved settings, checking them as strictly as CLI options."""
    from ganvas.config import LIMITS

    try:
        arch = architecture(config)
    except (KeyError, TypeError) as exc:
        raise GanvasError(f"{where}: missing the setting {exc}") from None
    limits = {"resolution": 4096, "channels": 4, "latent_dim": LIMITS["latent_dim"]}
    for key, limit in limits.items():
        value = arch[key]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            raise GanvasError(f"{where}: invalid {key} {str(value)[:40]!r}")
    if not isinstance(arch["model_options"], dict) or not isinstance(arch["model"], str):
        raise GanvasError(f"{where}: invalid model settings")
    classes = arch["classes"]
    if not (isinstance(classes, list) and len(classes) != 1 and len(classes) <= 10_000
            and all(isinstance(name, str) and name for name in classes)
            and len(set(classes)) == len(classes)):
        raise GanvasError(f"{where}: invalid class names {str(classes)[:40]!r}")
    try:
        if not (arch["aspect"] is None or isinstance(arch["aspect"], str)):
            raise GanvasError(f"invalid aspect {str(arch['aspect'])[:40]!r}")
        return build_generator(arch["model"], resolution=arch["resolution"],
                               channels=arch["channels"], latent_dim=arch["latent_dim"],
                               options=arch["model_options"], c_dim=len(classes),
                               aspect=arch["aspect"])
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
