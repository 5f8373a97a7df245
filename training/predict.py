"""Predict masks with this project's checkpoints or Pytorch-UNet's."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from data_pipeline.samples import mask_to_values
from models import create_model, list_models, min_input_side
from training import checkpoints as ckpt
from training.determinism import resolve_device
from training.losses import predict_classes
from training.settings import ConfigError


@dataclass
class Predictor:
    model: nn.Module
    mask_values: list
    device: torch.device
    description: str
    name: str  # the model's registered name


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    payload = ckpt.load_checkpoint(path)
    weights, mask_values = ckpt.weights_and_mask_values(payload)
    if ckpt.is_full_checkpoint(payload):
        saved = payload["config"]  # load_checkpoint checked its fields
        if saved["model"] not in list_models():
            raise ckpt.CheckpointError(f"{path}: trained with model={saved['model']!r}, which "
                                       f"this version does not have ({', '.join(list_models())})")
        arch = dict(name=saved["model"], width=saved["width"], bilinear=saved["bilinear"],
                    n_classes=saved["classes"], n_channels=_first_conv(weights, path).shape[1])
    else:
        arch = infer_unet_architecture(weights, path)
    name = arch.pop("name")
    model = create_model(name, **arch)
    ckpt.load_weights(model, weights, path)
    target = resolve_device(device)
    classes = max(2, model.n_classes)
    if len(mask_values) < classes:  # Pytorch-UNet defaults to [0, 1]; extra classes keep k
        mask_values = list(mask_values) + list(range(len(mask_values), classes))
    origin = "this project" if ckpt.is_full_checkpoint(payload) else "Pytorch-UNet"
    return Predictor(model.to(target).eval(), mask_values, target, f"{path} ({origin})", name)


def _first_conv(weights: dict, path) -> torch.Tensor:
    found = next((v for v in weights.values() if v.ndim == 4), None)
    if found is None:
        raise ckpt.CheckpointError(f"{path}: its weights hold no convolution")
    return found


def infer_unet_architecture(weights: dict, path) -> dict:
    """A Pytorch-UNet state_dict names no settings; read them off the tensor shapes."""
    try:
        first = weights["inc.double_conv.0.weight"]
        out = weights["outc.conv.weight"]
        if first.ndim != 4 or out.ndim != 4:
            raise KeyError("inc/outc are not convolutions")
    except KeyError:
        raise ckpt.CheckpointError(f"{path}: a state_dict without UNet's inc/outc layers; "
                                   "only Pytorch-UNet's UNet is recognised") from None
    return dict(name="unet", n_channels=first.shape[1], width=first.shape[0],
                n_classes=out.shape[0], bilinear="up1.up.weight" not in weights)


def input_size(image: Image.Image, scale: float = 1.0) -> tuple[int, int]:
    """(width, height) of what the model sees: the image resized by ``scale``."""
    width, height = image.size
    if scale == 1.0:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def check_image_size(predictor: Predictor, image: Image.Image, scale: float, source) -> None:
    """One line naming the sizes, where the model would fail deep inside ("Output size is too
    small") on a side its poolings halve to nothing."""
    width, height = input_size(image, scale)
    side = min_input_side(predictor.name)
    if min(width, height) < side:
        at = f" at scale {scale:g}" if scale != 1.0 else ""
        raise ConfigError(f"{source}: image is {width}x{height} px{at}, smaller than "
                          f"{predictor.name}'s minimum side of {side} px")


@torch.inference_mode()
def predict_mask(predictor: Predictor, image: Image.Image, scale: float = 1.0,
                 threshold: float = 0.5) -> np.ndarray:
    """Mask in the original mask values, at the input image's size."""
    width, height = image.size
    n_channels = predictor.model.n_channels
    image = image.convert("L" if n_channels == 1 else "RGB")
    if scale != 1.0:
        image = image.resize(input_size(image, scale), Image.BICUBIC)
    pixels = np.asarray(image, np.uint8)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    batch = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None].float().div_(255)
    logits = predictor.model(batch.to(predictor.device))
    # Back to the input size before choosing classes, as Pytorch-UNet's predict_img does.
    logits = F.interpolate(logits.float(), (height, width), mode="bilinear")
    classes = predict_classes(logits, threshold)[0].cpu().numpy()
    return mask_to_values(classes, predictor.mask_values)


def visualise(image: Image.Image, mask: np.ndarray, path: Path) -> Path:
    """Image, predicted mask and an overlay side by side, as one PNG (no display needed)."""
    rgb = np.asarray(image.convert("RGB"), np.uint8)
    grey = mask if mask.ndim == 2 else mask.mean(-1)
    foreground = grey > grey.min() if grey.max() > grey.min() else np.zeros_like(grey, bool)
    mask_rgb = np.repeat((foreground * 255).astype(np.uint8)[..., None], 3, -1)
    overlay = rgb.copy()
    overlay[foreground] = (0.45 * overlay[foreground] + 0.55 * np.array([255, 40, 40])).astype(
        np.uint8)
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, gap, mask_rgb, gap, overlay], 1)).save(path)
    return path
