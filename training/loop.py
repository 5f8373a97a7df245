"""The seeded training loop. It knows nothing of Ray or W&B: callers pass ``report`` to hear of
each epoch (the Ray Tune trainable turns it into ``tune.report``)."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from data_pipeline import SegmentationData, split_indices
from data_pipeline.folder import size_faults, smaller_than
from data_pipeline.loader import SegmentationDataset, make_eval_loader, make_loader
from models import create_model, min_input_side
from training import checkpoints as ckpt
from training.atomic import disk_full_guard
from training.config import TrainConfig
from training.costs import BUDGET, CostMeter, ForwardTimer
from training.determinism import (
    configure_determinism,
    nondeterministic_ops,
    quiet_determinism_warnings,
    resolve_device,
    seed_everything,
)
from training.errors import error_line
from training.losses import confusion_counts, dice_and_iou, predict_classes, segmentation_loss
from training.settings import ConfigError, quote

log = logging.getLogger(__name__)


@dataclass
class EpochState:
    """What ``report`` gets beside the metrics: enough to checkpoint or inspect the model."""
    epoch: int
    checkpoint_path: Path
    model: nn.Module
    config: TrainConfig


@dataclass
class TrainResult:
    history: list[dict]
    out_dir: Path
    last_checkpoint: Path | None
    nondeterministic_ops: list[str] = field(default_factory=list)

    @property
    def best(self) -> dict:
        return max(self.history, key=lambda m: m["val_dice"]) if self.history else {}


Report = Callable[[dict, EpochState], None]


def train(config: TrainConfig, data: SegmentationData, report: Report | None = None) -> TrainResult:
    epochs = train_epochs(config, data)
    while True:
        try:
            metrics, state = next(epochs)
        except StopIteration as done:
            return done.value
        if report is not None:
            report(metrics, state)


def train_epochs(config: TrainConfig, data: SegmentationData
                 ) -> Generator[tuple[dict, EpochState], None, TrainResult]:
    """The loop, one epoch per step: yields (metrics, state) after each epoch and returns the
    TrainResult. Seeds trained side by side (training/replicates.py) step several of these."""
    # ---- settings and determinism -------------------------------------------------------
    check_data(config, data)
    device = resolve_device(config.device)
    configure_determinism(device, config.deterministic)
    quiet_determinism_warnings()
    unstable_ops = nondeterministic_ops(config.model, config.bilinear, device)
    if unstable_ops and config.deterministic:
        log.warning("no deterministic CUDA kernel for: %s; results may differ slightly between "
                    "runs on this GPU", "; ".join(unstable_ops))
    if config.threads:
        # Fixed intra-op threads: reduction order (and so the last bits) can depend on them.
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    out_dir = Path(config.out_dir)
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    # ---- model, optimiser, schedule -----------------------------------------------------
    model, net, optimizer, scheduler, scaler, amp_dtype, memory_format = build_training(
        config, data.channels, device)
    start_epoch = 1
    if config.load:
        start_epoch = load_into(config, model, optimizer, scheduler, scaler)

    # ---- data ---------------------------------------------------------------------------
    train_idx, val_idx = split_indices(len(data), config.val_percent, config.split_seed)
    train_loader, val_loader = make_loaders(config, data, train_idx, val_idx,
                                            pin=config.pin_memory and device.type == "cuda")
    # What the model costs to run (training/costs.py): counted once, timed after each epoch's
    # validation; it draws no random numbers, so the run learns what it would without it.
    meter = CostMeter(model, data.channels, training_side(config, data, train_idx), device,
                      amp_dtype, memory_format)

    # ---- epochs ---------------------------------------------------------------------------
    history = read_history(out_dir / "metrics.jsonl", before_epoch=start_epoch)
    last_checkpoint = None
    next_batches = None  # the next epoch's batches, already being built by the workers
    for epoch in range(start_epoch, config.epochs + 1):
        epoch_start = time.perf_counter()
        meter.start_epoch()  # the epoch's peak memory starts here
        lr = optimizer.param_groups[0]["lr"]
        if next_batches is None:
            train_loader.sampler.set_epoch(epoch)
        train_loss, train_seconds = train_one_epoch(
            net, train_loader, optimizer, scaler, config, device, amp_dtype, memory_format,
            desc=f"Epoch {epoch}/{config.epochs}", batches=next_batches)
        next_batches = None
        if epoch < config.epochs and train_loader.num_workers > 0:
            # The workers start on the next epoch's first batches now, while this one
            # validates, saves and reports: a GPU otherwise waited 0.2-0.3 s per epoch for them
            # (tools/gpu/results/gpu_h200_loop.md). The sampler hands out (epoch, position) keys
            # as the iterator starts, so the epoch is set first and the batches are the same.
            train_loader.sampler.set_epoch(epoch + 1)
            next_batches = iter(train_loader)
        timer = ForwardTimer(device)  # validation's forward passes: the eval-batch latency
        val_loss, val_dice, val_iou = evaluate(net, val_loader, config, device, amp_dtype,
                                               memory_format, timer)
        step_scheduler(scheduler, val_dice)
        with record_function("costs"):  # ~1 % of the epoch (BUDGET); in epoch_seconds
            costs = meter.measure(timer, budget_s=BUDGET * (time.perf_counter() - epoch_start))
        with record_function("checkpoint"):
            last_checkpoint = ckpt.save_checkpoint(
                out_dir / "checkpoints" / f"checkpoint_epoch{epoch}.pth",
                model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler else {},
                scaler=scaler.state_dict(), epoch=epoch, config=config.to_dict(),
                mask_values=data.mask_values)
            ckpt.prune_checkpoints(out_dir / "checkpoints", config.keep_checkpoints)
        metrics = {
            "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
            "val_dice": val_dice, "val_iou": val_iou, "lr": lr,
            "epoch_seconds": time.perf_counter() - epoch_start,
            "samples_per_s": len(train_idx) / train_seconds,
            "train_samples": len(train_idx), **costs,
        }
        if device.type == "cuda":  # the name reports and benchmarks read since before costs
            metrics["gpu_peak_mem_mb"] = costs["peak_mem_mb"]
        history.append(metrics)
        append_jsonl(out_dir / "metrics.jsonl", metrics)
        log.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val_dice %.4f  val_iou %.4f  "
                 "%.1f img/s", epoch, config.epochs, train_loss, val_loss, val_dice, val_iou,
                 metrics["samples_per_s"])
        yield dict(metrics), EpochState(epoch, last_checkpoint, model, config)
    return TrainResult(history, out_dir, last_checkpoint, unstable_ops)


class Training(NamedTuple):
    """What the loop trains with; the speed probe (training/throughput.py) builds the same."""
    model: nn.Module  # the plain model: checkpoints keep its parameter names
    net: nn.Module  # what runs the steps: the model, or its compiled form
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format


def build_training(config: TrainConfig, channels: int, device: torch.device) -> Training:
    """The model on ``device``, its optimizer, schedule, grad scaler and autocast type. Seed
    first: the model's initial weights are drawn here."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = create_model(config.model, n_channels=channels, n_classes=config.classes,
                         bilinear=config.bilinear, width=config.width)
    model = model.to(device=device, memory_format=memory_format)
    # The compiled module shares the model's parameters; checkpoints keep the plain model's
    # names (no `_orig_mod.` prefix), so compiled and eager runs load each other's files.
    net = compile_model(model) if config.compile else model
    optimizer = make_optimizer(config, model)
    amp_dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    return Training(model, net, optimizer, make_scheduler(config, optimizer), scaler, amp_dtype,
                    memory_format)


def check_data(config: TrainConfig, data: SegmentationData) -> None:
    if len(data.mask_values) > max(config.classes, 2):
        raise ConfigError(f"masks hold {len(data.mask_values)} values {data.mask_values[:8]} "
                          f"but classes={config.classes}")
    shapes = [tuple(image.shape) for image in data.images]
    faults = size_faults(shapes, data.ids, config.crop)
    # Validation scores whole images: one whose side the model's poolings halve to nothing
    # would fail deep inside it ("Output size is too small").
    side = min_input_side(config.model)
    if small := smaller_than(side, f"{config.model}'s minimum side of {side} px", shapes,
                             data.ids):
        faults.append(f"{small}: use larger images or a larger scale")
    if faults:
        raise ConfigError("; ".join(faults))


def training_side(config: TrainConfig, data: SegmentationData, train_idx) -> tuple[int, int]:
    """(height, width) of what a training step sees: the crop, else the training images' one
    size (check_data made sure there is one)."""
    if config.crop:
        return config.crop, config.crop
    return tuple(data.images[int(train_idx[0])].shape[:2])


def make_loaders(config: TrainConfig, data: SegmentationData, train_idx, val_idx, pin: bool):
    """Training: random crops (if set) and augmentations, shuffled per epoch. Validation:
    whole images, never cropped, so a score does not depend on where crops fell."""
    train_loader = make_loader(
        SegmentationDataset(data.images, data.masks, train_idx, config.seed, config.augment,
                            crop=config.crop),
        config.batch_size, config.seed, shuffle=True, num_workers=config.num_workers,
        pin_memory=pin)
    val_loader = make_eval_loader(
        SegmentationDataset(data.images, data.masks, val_idx, config.seed, augment=False),
        config.eval_batch_size, num_workers=config.num_workers, pin_memory=pin)
    return train_loader, val_loader


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that have it (no loss scaling needed), else fp16; None means float32."""
    if not config.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def compile_model(model: nn.Module) -> nn.Module:
    """torch.compile: fuses the memory-bound BatchNorm/ReLU/concat work between convolutions."""
    if not hasattr(torch, "compile"):
        raise ConfigError("compile = true needs torch.compile (torch 2.0 or newer)")
    return torch.compile(model)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":  # Pytorch-UNet's choice
        return torch.optim.RMSprop(model.parameters(), lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay, foreach=True)
    return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                             foreach=True)


def make_scheduler(config: TrainConfig, optimizer):
    if config.scheduler == "plateau":  # on validation Dice, as Pytorch-UNet
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=5)
    if config.scheduler == "cosine":  # spans config.epochs: resume with the same epochs
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def step_scheduler(scheduler, val_dice: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_dice)
    elif scheduler is not None:
        scheduler.step()


ARCHITECTURE_KEYS = ("model", "width", "bilinear", "classes")
# The optimizer state's per-parameter entries each optimizer reads at its first step.
OPTIMIZER_STATE = {"rmsprop": ("step", "square_avg"), "adamw": ("step", "exp_avg", "exp_avg_sq")}


def load_into(config: TrainConfig, model, optimizer, scheduler, scaler) -> int:
    """Load ``config.load``; return the first epoch still to run."""
    payload = ckpt.load_checkpoint(config.load)  # every field is there, of the right type
    if not ckpt.is_full_checkpoint(payload):
        weights, _ = ckpt.weights_and_mask_values(payload)
        ckpt.load_weights(model, weights, config.load)
        log.warning("%s holds weights only (Pytorch-UNet format): training starts from these "
                    "weights at epoch 1 with a fresh optimizer", config.load)
        return 1
    check_same_settings(config, payload["config"])
    if payload["epoch"] >= config.epochs:
        raise ConfigError(f"{config.load} is at epoch {payload['epoch']}: nothing left to train "
                          f"with epochs={config.epochs} (epochs counts all epochs, so raise it)")
    ckpt.load_weights(model, payload["model"], config.load)
    restore_state(config, payload, optimizer, scheduler, scaler)
    log.info("resuming %s after epoch %d", config.load, payload["epoch"])
    return payload["epoch"] + 1


def check_same_settings(config: TrainConfig, saved: dict) -> None:
    """The architecture, optimizer and schedule must be the checkpoint's: their states only fit
    their own kind (RMSprop's square_avg is no AdamW state)."""
    mismatched = [k for k in (*ARCHITECTURE_KEYS, "optimizer", "scheduler")
                  if saved.get(k) != getattr(config, k)]
    if mismatched:
        raise ckpt.CheckpointError(
            f"{config.load}: trained with " + ", ".join(f"{k}={quote(saved.get(k))}"
                                                        for k in mismatched)
            + "; this run asks for " + ", ".join(f"{k}={getattr(config, k)!r}" for k in mismatched)
            + "; pass " + " ".join(flag(k, saved.get(k)) for k in mismatched) + " to resume it")


def flag(key: str, value) -> str:
    name = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return name if value else name.replace("--", "--no-", 1)
    return f"{name} {str(value)[:80]}"


def restore_state(config: TrainConfig, payload: dict, optimizer, scheduler, scaler) -> None:
    """Optimizer, schedule, grad scaler and RNGs, each checked: a hand-made or damaged state
    would otherwise fail later, at the first step, as a KeyError deep inside torch."""
    steps = [("optimizer", lambda: load_optimizer(optimizer, payload["optimizer"],
                                                  config.optimizer)),
             ("scheduler", lambda: scheduler is not None and payload["scheduler"]
              and load_like(scheduler, payload["scheduler"])),
             ("scaler", lambda: load_like(scaler, payload["scaler"])),
             ("rng", lambda: ckpt.restore_rng_state(payload["rng"]))]
    for part, restore in steps:
        try:
            restore()
        except (KeyError, TypeError, IndexError, ValueError, RuntimeError, AttributeError) \
                as error:
            raise ckpt.CheckpointError(f"{config.load}: its {part} state cannot be restored "
                                       f"({error_line(error, 120)}); start without -f, or use "
                                       "a checkpoint written by `train`") from None


def load_like(owner, state: dict) -> None:
    """``owner.load_state_dict(state)`` once ``state`` has the keys and kinds of values of
    ``owner``'s own: schedulers and scalers copy whatever they get, and fail at the next step."""
    for key, mine in owner.state_dict().items():
        if key not in state:
            raise KeyError(key)
        theirs = state[key]
        number = (int, float)
        if isinstance(mine, number) and not isinstance(mine, bool):
            fits = isinstance(theirs, number) and not isinstance(theirs, bool)
        else:
            fits = mine is None or theirs is None or isinstance(theirs, type(mine))
        if not fits:
            raise TypeError(f"{key} is a {type(theirs).__name__}, expected a "
                            f"{type(mine).__name__}")
    owner.load_state_dict(state)


def load_optimizer(optimizer, state: dict, kind: str) -> None:
    optimizer.load_state_dict(state)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        entry = optimizer.state.get(param)
        if not entry:
            continue  # never stepped: nothing to check
        missing = [key for key in OPTIMIZER_STATE[kind] if key not in entry]
        if missing:
            raise KeyError(f"parameter {index} has no {missing[0]!r}")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                raise ValueError(f"parameter {index}: {key} is {tuple(value.shape)}, the "
                                 f"parameter {tuple(param.shape)}")


def profiled(function: Callable) -> Callable:
    """``function`` inside a torch.profiler range of its name, so a profile of the loop shows
    where an epoch's time goes (tools/gpu/loop.py reads them). Without a profiler running, a
    range costs a few microseconds."""
    @functools.wraps(function)
    def in_range(*args, **kwargs):
        with record_function(function.__name__):
            return function(*args, **kwargs)
    return in_range


@profiled
def to_device(images, masks, device, memory_format):
    # uint8 travels to the device; the float conversion happens there (4x less to copy).
    images = images.to(device, non_blocking=True).float().div_(255)
    return images.contiguous(memory_format=memory_format), masks.to(device, non_blocking=True)


@profiled
def train_one_epoch(model, loader, optimizer, scaler, config, device, amp_dtype, memory_format,
                    desc: str, batches=None) -> tuple[float, float]:
    """One epoch over ``loader`` (or ``batches``: an iterator of it started earlier); returns
    the mean training loss and the seconds from here to the last step's end."""
    model.train()
    start = time.perf_counter()
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
    seen = 0
    if batches is None:
        with record_function("iter"):  # starts the loader's workers, if it has any
            batches = iter(loader)
    with tqdm(total=len(loader.dataset), desc=desc, unit="img", disable=None, leave=False) as bar:
        # Each wait for a batch is a profiler range of the DataLoader's own.
        for images, masks in batches:
            images, masks = to_device(images, masks, device, memory_format)
            loss = train_step(model, images, masks, optimizer, scaler, config.grad_clip,
                              amp_dtype)
            loss_sum += loss * len(images)
            seen += len(images)
            bar.update(len(images))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return float(loss_sum) / max(seen, 1), time.perf_counter() - start


@profiled
def train_step(model, images, masks, optimizer, scaler, grad_clip: float,
               amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One optimisation step; returns the detached loss (no host sync). bench/gpu_mfu.py and
    the speed probe (training/throughput.py) time this very function, so their figures are the
    loop's."""
    with torch.autocast(images.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        loss = segmentation_loss(model(images), masks)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@profiled
@torch.inference_mode()
def evaluate(model, loader, config, device, amp_dtype, memory_format,
             timer: ForwardTimer | None = None) -> tuple[float, float, float]:
    """Validation loss, Dice and IoU; ``timer`` (if given) times each forward pass."""
    model.eval()
    timed = timer.batch if timer is not None else lambda images: contextlib.nullcontext()
    counts = torch.zeros((max(config.classes, 2), 3), dtype=torch.long, device=device)
    loss_sum, seen = torch.zeros((), device=device), 0
    for images, masks in loader:
        images, masks = to_device(images, masks, device, memory_format)
        with timed(len(images)), torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                                enabled=amp_dtype is not None):
            logits = model(images)
        loss_sum += segmentation_loss(logits, masks) * len(images)
        seen += len(images)
        counts += confusion_counts(predict_classes(logits), masks, config.classes)
    dice, iou = dice_and_iou(counts.cpu())
    return float(loss_sum) / max(seen, 1), dice, iou


def read_history(path: Path, before_epoch: int) -> list[dict]:
    """Earlier epochs of a resumed run; later lines (from a run that went further) are dropped."""
    if before_epoch <= 1 or not path.exists():
        path.unlink(missing_ok=True)
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["epoch"] < before_epoch]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def append_jsonl(path: Path, row: dict) -> None:
    with disk_full_guard(path), path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
