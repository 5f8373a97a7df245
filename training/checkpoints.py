"""Checkpoints: ours resume a run exactly; Pytorch-UNet's (a state_dict plus a top-level
``mask_values``) give starting weights. Every load uses ``weights_only=True``."""
from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from training.atomic import atomic_write
from training.errors import error_line

FORMAT = "crack-sweep/1"
CHECKPOINT_NAME = re.compile(r"checkpoint_epoch(\d+)\.pth$")
# What a checkpoint of FORMAT holds, and the settings in its "config" that loading reads.
FIELDS = {"model": dict, "optimizer": dict, "scheduler": dict, "scaler": dict, "epoch": int,
          "config": dict, "mask_values": list, "rng": dict}
CONFIG_FIELDS = {"model": str, "width": int, "bilinear": bool, "classes": int, "optimizer": str,
                 "scheduler": str}


class CheckpointError(ValueError):
    """A checkpoint path or file that cannot be used; the message is one line."""


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle refused by weights_only, truncated file...
        raise CheckpointError(f"{path}: not a loadable checkpoint ({error_line(error, 120)})") \
            from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(payload).__name__}")
    if is_full_checkpoint(payload):
        check_fields(payload, path)
    try:
        weights, _ = weights_and_mask_values(payload)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    check_finite(weights, path)
    return payload


def check_archive(path: Path) -> None:
    """torch.save writes a zip archive whose entries each carry a CRC-32, but torch.load never
    checks them: a flipped byte or a NaN written over a tensor loads silently. Check them all
    (about a second per GB). Legacy (pre-zip) files have no checksums; torch.load judges them."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: damaged archive ({error_line(error, 120)})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged: {damaged} no longer matches the checksum it was "
                              "saved with (the file changed on disk); use another checkpoint")


def check_fields(payload: dict, path: Path) -> None:
    """A checkpoint that names this project's format must hold every field loading reads."""
    for key, kind in FIELDS.items():
        if key not in payload:
            raise CheckpointError(f"{path}: no {key!r} in this checkpoint (hand-made or from "
                                  "another program?); save it with `train` again")
        value = payload[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: {key!r} is a {type(value).__name__}, expected a "
                                  f"{kind.__name__}")
    if payload["epoch"] < 1:
        raise CheckpointError(f"{path}: 'epoch' is {payload['epoch']}, expected 1 or more")
    config = payload["config"]
    for key, kind in CONFIG_FIELDS.items():
        if not isinstance(config.get(key), kind):
            raise CheckpointError(f"{path}: its config lacks {key} (or it is not a "
                                  f"{kind.__name__}); it cannot be rebuilt")
    if not 1 <= config["width"] <= 256 or not 1 <= config["classes"] <= 256:
        raise CheckpointError(f"{path}: its config says width={config['width']}, "
                              f"classes={config['classes']} (each 1 to 256)")


def check_finite(weights: dict, path: Path) -> None:
    """NaN or infinite weights predict nothing (an all-background mask) and train nowhere."""
    for name, tensor in weights.items():
        if torch.is_floating_point(tensor) and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: weights hold NaN or infinite values ({name}: {bad} "
                                  f"of {tensor.numel()}): a diverged run or a damaged file; use "
                                  "an earlier checkpoint")


def is_full_checkpoint(payload: dict) -> bool:
    return payload.get("format") == FORMAT


def weights_and_mask_values(payload: dict) -> tuple[dict, list]:
    """Model weights and mask_values from either kind of checkpoint."""
    if is_full_checkpoint(payload):
        weights, mask_values = payload["model"], payload["mask_values"]
    else:
        weights = {k: v for k, v in payload.items() if k != "mask_values"}
        mask_values = payload.get("mask_values", [0, 1])
    if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError("checkpoint holds neither this project's format nor a state_dict")
    if not isinstance(mask_values, (list, tuple)):
        raise CheckpointError(f"checkpoint's mask_values is a {type(mask_values).__name__}, "
                              "expected a list")
    return weights, list(mask_values)


def load_weights(model: torch.nn.Module, weights: dict, path: str) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else "")[:120]
        raise CheckpointError(f"{path}: weights do not fit this model ({detail})") \
            from None


def rng_state() -> dict:
    """RNG states in plain types, so a weights_only load accepts them."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **payload) -> Path:
    # Written aside, then renamed: a killed run never leaves a half-written checkpoint behind.
    return atomic_write(path, lambda temporary: torch.save(
        {"format": FORMAT, **payload, "rng": rng_state()}, temporary))


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Keep the newest ``keep`` epoch checkpoints (0 keeps all)."""
    if keep <= 0:
        return
    found = sorted((int(m.group(1)), p) for p in folder.glob("checkpoint_epoch*.pth")
                   if (m := CHECKPOINT_NAME.search(p.name)))
    for _, path in found[:-keep]:
        path.unlink(missing_ok=True)
