"""Seeding and deterministic execution for one training run."""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from training.settings import ConfigError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # TrainConfig.validate keeps such names out; a caller may not
        raise ConfigError(f"device = {name[:80]!r} is not a device (auto, cpu, cuda or "
                          "cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {name!r} asked for, but torch sees no CUDA GPU")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device = {name!r} asked for, but torch sees "
                          f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return device


def configure_determinism(device: torch.device, enabled: bool) -> None:
    """Deterministic kernels where torch has them; warn (not fail) where it has none."""
    if device.type == "cuda":
        # Must be set before cuBLAS starts; harmless if CUDA is already up with the same value.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not enabled
        torch.backends.cudnn.deterministic = enabled
    torch.use_deterministic_algorithms(enabled, warn_only=True)


def nondeterministic_ops(model_name: str, bilinear: bool, device: torch.device) -> list[str]:
    """Ops of this model that have no deterministic CUDA kernel (so results may vary a little
    from run to run on a GPU). On CPU every op we use is deterministic."""
    if device.type != "cuda":
        return []
    ops = []
    if model_name == "segnet":
        ops.append("MaxUnpool2d (SegNet decoder: max_unpooling2d forward)")
    # Bilinear upsampling's backward (UNet with bilinear=True) used to be on this list; torch
    # 2.11 on an H100 no longer flags it (tests/test_gpu.py checks the list against torch's).
    return ops


def quiet_determinism_warnings() -> None:
    """Torch warns on every call of such an op; we name them once at start instead."""
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
