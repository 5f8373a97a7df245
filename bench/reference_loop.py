"""The baseline the `loop` and `gpu` benchmarks measure our loop against: a training loop that
works the way milesial/Pytorch-UNet's train.py does (written here afresh, not copied).

What makes it the reference, on purpose:
- every item is found by a glob in its folder, re-opened and re-decoded with PIL every epoch,
  resized bicubically (masks nearest) by ``scale``, and turned into a float32 tensor (/255) in
  the loader, so 4x the bytes travel to the device;
- the model stays float32 and contiguous (no channels_last); ``amp`` is plain autocast
  (float16 with a GradScaler on CUDA);
- validation runs 5 times per epoch (every n_train // (5 * batch_size) steps), each time over
  the whole validation set, and steps ReduceLROnPlateau on its Dice;
- ``loss.item()`` every step (a device sync), and a state_dict saved every epoch.
The loss is cross-entropy plus a soft Dice over all classes pooled, as there.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models import create_model
from training.losses import confusion_counts, dice_and_iou, predict_classes


class PerItemDecodeDataset(Dataset):
    """Pytorch-UNet's BasicDataset, in behaviour: DIR/imgs/ID.* and DIR/masks/ID_mask.*."""

    def __init__(self, root: Path, ids: list[str], scale: float, mask_values: list):
        self.images_dir, self.masks_dir = Path(root) / "imgs", Path(root) / "masks"
        self.ids, self.scale, self.mask_values = list(ids), scale, mask_values

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        name = self.ids[index]
        image = Image.open(only_match(self.images_dir, name + ".*"))
        mask = Image.open(only_match(self.masks_dir, name + "_mask.*"))
        width, height = image.size
        size = (int(width * self.scale), int(height * self.scale))
        pixels = np.asarray(image.resize(size, resample=Image.BICUBIC))
        labels = np.asarray(mask.resize(size, resample=Image.NEAREST))
        pixels = pixels[np.newaxis] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        classes = np.zeros(labels.shape[:2], dtype=np.int64)
        for k, value in enumerate(self.mask_values):
            classes[labels == value] = k
        return {"image": torch.as_tensor((pixels / 255.0).copy()).float().contiguous(),
                "mask": torch.as_tensor(classes).long().contiguous()}


def only_match(folder: Path, pattern: str) -> Path:
    matches = list(folder.glob(pattern))  # a directory scan per item, as the reference does
    if len(matches) != 1:
        raise FileNotFoundError(f"{folder}/{pattern}: {len(matches)} matches, expected 1")
    return matches[0]


def scan_mask_values(root: Path, ids: list[str]) -> list:
    """The distinct mask values, read from every mask file once before training (the reference
    does this in its dataset's constructor)."""
    values = set()
    for name in ids:
        values.update(np.unique(np.asarray(Image.open(only_match(Path(root) / "masks",
                                                                 name + "_mask.*")))).tolist())
    return sorted(values)


def pooled_dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6):
    """1 - soft Dice with every class and sample pooled into one sum (the reference's form)."""
    intersection = 2 * (probs * target).sum()
    total = probs.sum() + target.sum()
    return 1 - (intersection + eps) / (total + eps)


def reference_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(masks, logits.shape[1]).permute(0, 3, 1, 2).float()
    return F.cross_entropy(logits, masks) + pooled_dice_loss(F.softmax(logits, 1).float(), target)


@torch.no_grad()
def reference_evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
                       amp: bool) -> float:
    """Mean over batches of the per-image, per-class Dice of the hard prediction, background
    left out (the reference's score; it depends on how the set is batched)."""
    model.eval()
    total, batches = 0.0, 0
    for batch in loader:
        images = batch["image"].to(device, dtype=torch.float32)
        masks = batch["mask"].to(device)
        with torch.autocast(device.type, enabled=amp):
            logits = model(images)
        n_classes = logits.shape[1]
        pred = F.one_hot(logits.argmax(1), n_classes).permute(0, 3, 1, 2)[:, 1:].float()
        true = F.one_hot(masks, n_classes).permute(0, 3, 1, 2)[:, 1:].float()
        inter = 2 * (pred * true).sum((-1, -2))
        sums = pred.sum((-1, -2)) + true.sum((-1, -2))
        sums = torch.where(sums == 0, inter, sums)
        total += float(((inter + 1e-6) / (sums + 1e-6)).mean())
        batches += 1
    model.train()
    return total / max(batches, 1)


def train_reference(root: str, train_ids: list[str], val_ids: list[str], *, scale: float,
                    width: int, epochs: int, batch_size: int, lr: float, momentum: float,
                    weight_decay: float, grad_clip: float, device: str, amp: bool,
                    num_workers: int, out_dir: str, seed: int = 0,
                    on_epoch: Callable[[int], None] | None = None) -> dict:
    torch.manual_seed(seed)
    device = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mask_values = scan_mask_values(Path(root), train_ids + val_ids)
    train_set = PerItemDecodeDataset(Path(root), train_ids, scale, mask_values)
    val_set = PerItemDecodeDataset(Path(root), val_ids, scale, mask_values)
    n_channels = train_set[0]["image"].shape[0]
    model = create_model("unet", n_channels=n_channels, n_classes=len(mask_values),
                         width=width).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=weight_decay,
                                    momentum=momentum, foreach=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", patience=5)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loader_args = dict(batch_size=batch_size, num_workers=num_workers,
                       pin_memory=device.type == "cuda")
    train_loader = DataLoader(train_set, shuffle=True, **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, drop_last=True, **loader_args)
    eval_every = len(train_set) // (5 * batch_size)
    step, score, eval_seconds = 0, float("nan"), 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_loss = 0.0
        for batch in train_loader:
            images = batch["image"].to(device, dtype=torch.float32)
            masks = batch["mask"].to(device)
            with torch.autocast(device.type, enabled=amp):
                loss = reference_loss(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            epoch_loss += loss.item()
            if eval_every > 0 and step % eval_every == 0:
                began = time.perf_counter()
                score = reference_evaluate(model, val_loader, device, amp)
                eval_seconds += time.perf_counter() - began
                scheduler.step(score)
        torch.save({**model.state_dict(), "mask_values": mask_values},
                   out / f"checkpoint_epoch{epoch}.pth")
        if on_epoch is not None:
            on_epoch(epoch)
    val_dice = summed_val_dice(model, val_set, batch_size, device, amp)
    return {"reference_score": score, "val_dice": val_dice, "n_train": len(train_set),
            "n_val": len(val_set), "final_lr": optimizer.param_groups[0]["lr"],
            "validation_s": eval_seconds}


@torch.no_grad()
def summed_val_dice(model: nn.Module, val_set: Dataset, batch_size: int, device: torch.device,
                    amp: bool) -> float:
    """The final model scored as our loop scores its own (counts summed over the whole set):
    the two loops' val_dice are then comparable."""
    model.eval()
    counts = None
    for batch in DataLoader(val_set, batch_size=batch_size, shuffle=False):
        images = batch["image"].to(device, dtype=torch.float32)
        with torch.autocast(device.type, enabled=amp):
            logits = model(images)
        batch_counts = confusion_counts(predict_classes(logits), batch["mask"].to(device),
                                        logits.shape[1])
        counts = batch_counts if counts is None else counts + batch_counts
    return dice_and_iou(counts.cpu())[0]
