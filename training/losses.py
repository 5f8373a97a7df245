"""Loss and scores for segmentation logits: pure functions of tensors.

Cross-entropy is written through a one-hot product rather than F.cross_entropy because CUDA's
nll_loss2d has no deterministic kernel; the one-hot form is elementwise ops and reductions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def one_hot(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, H, W) class indices -> (N, C, H, W) float."""
    return F.one_hot(masks, n_classes).permute(0, 3, 1, 2).float()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities; one output channel means binary (sigmoid), as in Pytorch-UNet."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else F.softmax(logits, dim=1)


def predict_classes(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    if logits.shape[1] == 1:
        return (torch.sigmoid(logits.float())[:, 0] > threshold).long()
    return logits.argmax(dim=1)


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - soft Dice, averaged over classes (and samples): Pytorch-UNet's multiclass form."""
    dims = (2, 3)
    intersection = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    dice = (2 * intersection + eps) / (total + eps)
    return 1 - dice.mean()


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (BCE for one channel) plus Dice loss."""
    logits = logits.float()
    if logits.shape[1] == 1:
        target = masks.unsqueeze(1).float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(torch.sigmoid(logits), target)
    target = one_hot(masks, logits.shape[1])
    cross_entropy = -(F.log_softmax(logits, dim=1) * target).sum(1).mean()
    return cross_entropy + dice_loss(F.softmax(logits, dim=1), target)


def confusion_counts(pred: torch.Tensor, masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per class (true positives, predicted, actual) pixel counts as int64, shape (C, 3).

    Summing counts over the whole validation set (instead of averaging per-batch scores) makes
    the validation Dice independent of how the set is batched.
    """
    classes = max(n_classes, 2)
    rows = []
    for k in range(classes):
        p, t = pred == k, masks == k
        rows.append(torch.stack([(p & t).sum(), p.sum(), t.sum()]))
    return torch.stack(rows).long()


def dice_and_iou(counts: torch.Tensor) -> tuple[float, float]:
    """Mean foreground Dice and IoU from summed counts (background, class 0, is left out, as in
    Pytorch-UNet's evaluation). A class absent from both prediction and truth scores 1."""
    tp, predicted, actual = counts[1:].double().unbind(1)
    union = predicted + actual - tp
    dice = torch.where(predicted + actual > 0, 2 * tp / (predicted + actual).clamp(min=1), 1.0)
    iou = torch.where(union > 0, tp / union.clamp(min=1), 1.0)
    return float(dice.mean()), float(iou.mean())
