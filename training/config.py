"""Settings of one training run: defaults here, then YAML, then command-line overrides."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from models import list_models, min_input_side
from training.atomic import check_writable_folder
from training.settings import ConfigError, build, quote, require, setting

OPTIMIZERS = ("rmsprop", "adamw")
SCHEDULERS = ("plateau", "cosine", "none")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]{1,2})?")
# Upper bounds, far above any sensible run: they make a typo (an extra zero or three) one line
# here instead of a memory error (or a run that never ends) later. README "Bad input".
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
UPPER_BOUNDS = {"width": 256, "classes": 256, "epochs": 100_000, "batch_size": 4096,
                "eval_batch_size": 4096, "synthetic_images": 100_000, "synthetic_size": 4096,
                "num_workers": 256, "threads": 1024, "keep_checkpoints": 100_000,
                "seed": MAX_SEED, "split_seed": MAX_SEED, "synthetic_seed": MAX_SEED}
MAX_SYNTHETIC_BYTES = 4 * 2**30  # the decoded synthetic set: images x side^2 x 4 bytes


@dataclass
class TrainConfig:
    # Model
    model: str = setting("unet", "Architecture, by its registered name (e.g. unet, segnet)")
    width: int = setting(16, "Base channel count of the first layer; 64 is Pytorch-UNet's full "
                             "width")
    bilinear: bool = setting(False, "Bilinear upsampling instead of transposed convolutions")
    classes: int = setting(2, "Output classes, background included")
    channels_last: bool = setting(True, "NHWC memory layout: ~25 % faster convolutions on CPU "
                                        "and GPU")
    # Data
    data_dir: str = setting("", "Folder with imgs/ and masks/ (Pytorch-UNet's layout); '' = the "
                                "embedded synthetic crack set")
    synthetic_images: int = setting(160, "Images in the synthetic set")
    synthetic_size: int = setting(128, "Side of a synthetic image, in pixels")
    synthetic_seed: int = setting(0, "Seed of the synthetic set's generator")
    scale: float = setting(1.0, "Downscaling factor of the images")
    mask_suffix: str = setting("auto", "Mask file name suffix after the image id (e.g. _mask); "
                                       "auto tries _mask, then none")
    val_percent: float = setting(10.0, "Share of the data held out for validation, in %")
    split_seed: int = setting(0, "Seed of the validation split (the split depends on it alone, "
                                 "never on seed)")
    augment: bool = setting(True, "Random flips, 90-degree turns and brightness/contrast "
                                  "jitter of training images")
    crop: int = setting(0, "Training crop side in pixels: a random NxN window per image and "
                           "epoch (seeded); 0 = whole images, which then need one size. "
                           "Validation always scores whole images; images smaller than N are "
                           "refused")
    cache_dir: str = setting("", "Folder of the decoded-data cache; '' = $CRACK_SWEEP_CACHE, else "
                                 "~/.cache/crack-sweep/data")
    # Optimisation
    epochs: int = setting(5, "Passes over the training set")
    batch_size: int = setting(4, "Training images per step")
    eval_batch_size: int = setting(8, "Validation images per forward pass")
    lr: float = setting(1e-3, "Initial learning rate")
    optimizer: str = setting("rmsprop", "rmsprop (Pytorch-UNet's) or adamw")
    weight_decay: float = setting(1e-8, "Weight decay (L2 penalty) of the optimizer")
    momentum: float = setting(0.9, "Momentum of RMSprop (ignored by AdamW)")
    scheduler: str = setting("plateau", "Learning-rate schedule: plateau (on val_dice), cosine "
                                        "or none")
    grad_clip: float = setting(1.0, "Gradient norm clipping threshold; 0 = off")
    seed: int = setting(0, "Seed of initialisation, shuffling and augmentation")
    # Runtime (num_workers and pin_memory change speed, never results)
    device: str = setting("auto", "auto (CUDA if present), cpu, cuda or cuda:N")
    amp: bool = setting(True, "Mixed precision on CUDA (bf16 where supported); ignored on CPU")
    deterministic: bool = setting(True, "Deterministic CUDA kernels (the ops without one are "
                                        "named)")
    compile: bool = setting(False, "torch.compile the model (fuses memory-bound layers; the first "
                                   "epoch pays the compile); compiled kernels may round "
                                   "differently from eager ones")
    num_workers: int = setting(0, "Data-loading worker processes; 0 = load in the main process")
    pin_memory: bool = setting(True, "Page-locked host memory for batches; CUDA only")
    # Unlike num_workers this can change the last bits of results (reductions split by
    # thread), so sweeps pin it.
    threads: int = setting(0, "torch intra-op CPU threads; 0 = torch's default (the core count)")
    out_dir: str = setting("runs/train", "Folder for checkpoints, metrics.jsonl and samples")
    keep_checkpoints: int = setting(3, "Newest checkpoints kept per run; 0 keeps all")
    load: str = setting("", "Checkpoint to resume (ours) or to start from (Pytorch-UNet "
                            "weights); '' = none")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> TrainConfig:
        config = build(cls, values, source)
        config.validate(source)
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_data(self, check_crop: bool = True):
        """The data set these settings name (a folder, or the synthetic set), mapped from its
        decoded cache (built on first use). ``check_crop=False`` leaves the image sizes against
        ``crop`` to each run (a sweep that searches crop)."""
        from data_pipeline import load_data

        return load_data(self.data_dir, scale=self.scale, mask_suffix=self.mask_suffix,
                         n_classes=self.classes, synthetic_images=self.synthetic_images,
                         synthetic_size=self.synthetic_size, synthetic_seed=self.synthetic_seed,
                         cache_dir=self.cache_dir, crop=self.crop if check_crop else None)

    def check_cache_dir(self) -> None:
        """One line now if the data set is still to be decoded and the cache folder cannot take
        it, rather than a traceback from the decode."""
        from data_pipeline.cache import ENV_VAR, cache_root, data_spec, is_decoded

        spec = data_spec(self.data_dir, self.scale, self.mask_suffix, self.synthetic_images,
                         self.synthetic_size, self.synthetic_seed)
        if not is_decoded(spec, self.cache_dir):
            check_writable_folder(cache_root(self.cache_dir), "cache_dir",
                                  f"; set cache_dir (or ${ENV_VAR}) to a folder you can write")

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes}, "replace")

    def validate(self, source: str = "config") -> None:
        if self.model not in list_models():
            raise ConfigError(f"{source}: model = {quote(self.model)} is unknown "
                              f"(choose one of {', '.join(list_models())})")
        for key in ("width", "classes", "epochs", "batch_size", "eval_batch_size",
                    "synthetic_images", "synthetic_size"):
            require(getattr(self, key) >= 1, source, key, getattr(self, key), "at least 1")
        require(self.synthetic_images >= 2, source, "synthetic_images", self.synthetic_images,
                "at least 2 (one for training, one for validation)")
        for key in ("seed", "split_seed", "synthetic_seed"):  # numpy seeds are non-negative
            require(getattr(self, key) >= 0, source, key, getattr(self, key), "0 or more")
        for key in ("num_workers", "threads", "keep_checkpoints", "crop"):
            require(getattr(self, key) >= 0, source, key, getattr(self, key), "0 or more")
        side = min_input_side(self.model)  # the model's poolings halve smaller crops to nothing
        require(self.crop == 0 or self.crop >= side, source, "crop", self.crop,
                f"0 or at least {side} ({self.model}'s minimum image side)")
        for key, high in UPPER_BOUNDS.items():
            require(getattr(self, key) <= high, source, key, getattr(self, key),
                    f"at most {high}")
        # Floats are finite already (settings.coerce); these are their ranges.
        require(0 < self.lr <= 10, source, "lr", self.lr, "a positive number up to 10")
        require(0 < self.scale <= 4, source, "scale", self.scale, "a positive number up to 4")
        require(0 <= self.weight_decay <= 1, source, "weight_decay", self.weight_decay,
                "between 0 and 1")
        require(0 <= self.momentum < 1, source, "momentum", self.momentum,
                "between 0 and 1 (1 excluded)")
        self.check_synthetic_size(source)
        require(0 < self.val_percent < 100, source, "val_percent", self.val_percent,
                "between 0 and 100 (exclusive)")
        require(self.optimizer in OPTIMIZERS, source, "optimizer", self.optimizer,
                " or ".join(OPTIMIZERS))
        require(self.scheduler in SCHEDULERS, source, "scheduler", self.scheduler,
                " or ".join(SCHEDULERS))
        require(bool(DEVICE_PATTERN.fullmatch(self.device)), source, "device", self.device,
                "auto, cpu, cuda or cuda:N")
        require(self.grad_clip >= 0, source, "grad_clip", self.grad_clip, "0 (off) or more")

    def check_synthetic_size(self, source: str) -> None:
        """The synthetic set is decoded whole before training: bound its memory up front."""
        if self.data_dir:
            return
        side = max(16, int(round(self.synthetic_size * self.scale)))  # as load_data makes it
        need = self.synthetic_images * side * side * 4  # RGB image + mask, uint8
        if need > MAX_SYNTHETIC_BYTES:
            raise ConfigError(
                f"{source}: synthetic_images = {self.synthetic_images} of synthetic_size = "
                f"{self.synthetic_size} (scale {self.scale:g}) need {need / 2**30:.1f} GiB; at "
                f"most {MAX_SYNTHETIC_BYTES // 2**30} GiB: use fewer or smaller images")
