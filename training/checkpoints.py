"""Checkpoints: ours resume a run exactly; Pytorch-UNet's (a state_dict plus a top-level
``mask_values``) give starting weights. Every load uses ``weights_only=True``."""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from training.atomic import atomic_write

FORMAT = "crack-sweep/1"
CHECKPOINT_NAME = re.compile(r"checkpoint_epoch(\d+)\.pth$")


class CheckpointError(ValueError):
    """A checkpoint path or file that cannot be used; the message is one line."""


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle refused by weights_only, truncated file...
        first_line = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(error).__name__}: "
                              f"{first_line})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(payload).__name__}")
    return payload


def is_full_checkpoint(payload: dict) -> bool:
    return payload.get("format") == FORMAT


def weights_and_mask_values(payload: dict) -> tuple[dict, list]:
    """Model weights and mask_values from either kind of checkpoint."""
    if is_full_checkpoint(payload):
        return payload["model"], payload["mask_values"]
    weights = {k: v for k, v in payload.items() if k != "mask_values"}
    if not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError("checkpoint holds neither this project's format nor a state_dict")
    return weights, list(payload.get("mask_values", [0, 1]))


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
