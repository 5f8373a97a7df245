"""Validation panels for W&B, rendered inside a trial (only it holds the model): one row per
image, columns image | true mask | predicted mask, as Pytorch-UNet's W&B runs show them.

The trial side of the mirror: ``sweep.trainable`` imports this module, so it imports no
driver code (no callback, channel, writer, integration or sync): only settings, records and
the run directory's names.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_pipeline import split_indices
from sweep.rundir import VAL_IMAGES_DIR
from sweep.wandb_mirror.records import IMAGE_KEY
from sweep.wandb_mirror.settings import WandbSettings, resolve_mode
from training.losses import predict_classes

GAP = 2  # white pixels between tiles
log = logging.getLogger(__name__)


def val_panel_reporter(wandb_section: dict, data, max_epochs: int, storage=None):
    """Inside a trial: a function ``(metrics, state)`` that renders a validation panel at the
    chosen epochs and puts where it is in ``metrics`` (the mirror logs it as an image); None
    when W&B or images are off.

    ``storage``: the sweep's trial storage (sweep.rundir.TrialStorage). The panel goes into the
    trial's folder there and ``metrics`` holds its path relative to that folder: the driver may
    run on another node, and the storage is the one place every node reaches. Without one (a
    trial outside a sweep) the panel stays in the trial's local folder, its path absolute."""
    settings = WandbSettings.from_dict(wandb_section, "wandb")
    # The callback's own resolution: WANDB_MODE=disabled in a trial's environment turns it off.
    if resolve_mode(settings) == "disabled" or not settings.image_count:
        return None
    epochs = render_epochs(settings.image_epochs, max_epochs)

    def add_panel(metrics: dict, state) -> None:
        if state.epoch not in epochs:
            return
        from ray import tune

        context = tune.get_context()
        _, val = split_indices(len(data), state.config.val_percent, state.config.split_seed)
        name = f"epoch_{state.epoch:03d}.png"
        try:  # a picture is never worth a trial: an error (a storage outage too) costs it alone
            if storage is None:
                folder = Path(context.get_trial_dir()) / VAL_IMAGES_DIR
                path = render_val_panel(state.model, data, val, settings.image_count,
                                        folder / name)
                metrics[IMAGE_KEY] = str(path)
                return
            with tempfile.TemporaryDirectory(prefix="panel-") as folder:
                path = render_val_panel(state.model, data, val, settings.image_count,
                                        Path(folder) / name)
                storage.put_file(path, context.get_experiment_name(), context.get_trial_id(),
                                 VAL_IMAGES_DIR, name)
        except Exception as error:  # noqa: BLE001
            log.warning("validation panel not rendered at epoch %d: %s", state.epoch, error)
            return
        metrics[IMAGE_KEY] = f"{VAL_IMAGES_DIR}/{name}"

    return add_panel


def render_val_panel(model: torch.nn.Module, data, val_indices, count: int,
                     path: str | Path) -> Path:
    """Write the panel for the first ``count`` validation images to ``path`` (a PNG)."""
    indices = [int(i) for i in list(val_indices)[:count]]
    if not indices:
        raise ValueError("no validation images to render")
    # One image at a time: a folder may mix sizes. Classes from mask_values: no pass over
    # every (memory-mapped) mask.
    predicted = [predict_masks(model, data.images[i][None])[0] for i in indices]
    classes = max(len(data.mask_values) - 1, max(int(p.max()) for p in predicted), 1)
    rows = [np.concatenate(with_gaps([rgb(data.images[i]), mask_rgb(data.masks[i], classes),
                                      mask_rgb(predicted[k], classes)], axis=1), axis=1)
            for k, i in enumerate(indices)]
    width = max(row.shape[1] for row in rows)  # narrower rows padded white on the right
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255)
            for row in rows]
    panel = np.concatenate(with_gaps(rows, axis=0), axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path)
    return path


@torch.inference_mode()
def predict_masks(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Class indices for a batch of uint8 NHWC images; the model's train/eval mode is kept."""
    was_training = model.training
    device = next(model.parameters()).device
    batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    model.eval()
    try:
        logits = model(batch.to(device).float().div_(255))
    finally:
        model.train(was_training)
    return predict_classes(logits).cpu().numpy().astype(np.uint8)


def rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3]


def mask_rgb(mask: np.ndarray, classes: int) -> np.ndarray:
    """Class k as grey level k / classes: background black, cracks white for two classes."""
    grey = (mask.astype(np.float32) * (255.0 / classes)).round().astype(np.uint8)
    return np.repeat(grey[..., None], 3, -1)


def with_gaps(tiles: list[np.ndarray], axis: int) -> list[np.ndarray]:
    shape = list(tiles[0].shape)
    shape[axis] = GAP
    gap = np.full(shape, 255, np.uint8)
    out = []
    for tile in tiles:
        out += [tile, gap]
    return out[:-1]


def render_epochs(image_epochs: list[int], max_epochs: int) -> set[int]:
    """The epochs a trial renders panels at; -1 stands for its last epoch."""
    return {max_epochs if e == -1 else e for e in image_epochs if e == -1 or e <= max_epochs}
