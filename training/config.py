"""Settings of one training run: defaults here, then YAML, then command-line overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from models import list_models
from training.settings import ConfigError, build, require

OPTIMIZERS = ("rmsprop", "adamw")
SCHEDULERS = ("plateau", "cosine", "none")


@dataclass
class TrainConfig:
    # Model
    model: str = "unet"
    width: int = 16  # base channels; 64 is Pytorch-UNet's full width
    bilinear: bool = False
    classes: int = 2
    channels_last: bool = True  # NHWC: ~25 % faster convolutions on this CPU, and on GPUs
    # Data ('' = the embedded synthetic crack set)
    data_dir: str = ""
    synthetic_images: int = 160
    synthetic_size: int = 128
    synthetic_seed: int = 0
    scale: float = 1.0
    mask_suffix: str = "auto"
    val_percent: float = 10.0
    split_seed: int = 0  # the validation split depends on this alone, never on `seed`
    augment: bool = True
    # Optimisation
    epochs: int = 5
    batch_size: int = 4
    eval_batch_size: int = 8
    lr: float = 1e-3
    optimizer: str = "rmsprop"
    weight_decay: float = 1e-8
    momentum: float = 0.9
    scheduler: str = "plateau"
    grad_clip: float = 1.0
    seed: int = 0
    # Runtime (num_workers and pin_memory change speed, never results)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (bf16 where supported); ignored on CPU
    deterministic: bool = True
    # torch.compile the model (fuses the memory-bound layers; the first epoch pays the compile).
    # Off by default: compiled kernels may round differently from eager ones.
    compile: bool = False
    num_workers: int = 0
    pin_memory: bool = True  # only takes effect on CUDA
    # torch intra-op threads, 0 = torch's default (the core count). Unlike num_workers this can
    # change the last bits of results (reductions split by thread), so sweeps pin it.
    threads: int = 0
    out_dir: str = "runs/train"
    keep_checkpoints: int = 3  # newest checkpoints kept per run; 0 keeps all
    load: str = ""  # checkpoint to resume (ours) or to start from (Pytorch-UNet weights)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> TrainConfig:
        config = build(cls, values, source)
        config.validate(source)
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_data(self):
        """Decode the data set these settings name (a folder, or the synthetic set)."""
        from data_pipeline import load_data

        return load_data(self.data_dir, scale=self.scale, mask_suffix=self.mask_suffix,
                         n_classes=self.classes, synthetic_images=self.synthetic_images,
                         synthetic_size=self.synthetic_size, synthetic_seed=self.synthetic_seed)

    def replace(self, **changes) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes}, "replace")

    def validate(self, source: str = "config") -> None:
        if self.model not in list_models():
            raise ConfigError(f"{source}: model = {self.model!r} is unknown "
                              f"(choose one of {', '.join(list_models())})")
        for key in ("width", "classes", "epochs", "batch_size", "eval_batch_size",
                    "synthetic_images", "synthetic_size"):
            require(getattr(self, key) >= 1, source, key, getattr(self, key), "at least 1")
        require(self.synthetic_images >= 2, source, "synthetic_images", self.synthetic_images,
                "at least 2 (one for training, one for validation)")
        for key in ("seed", "split_seed", "synthetic_seed"):  # numpy seeds are non-negative
            require(getattr(self, key) >= 0, source, key, getattr(self, key), "0 or more")
        for key in ("num_workers", "threads", "keep_checkpoints"):
            require(getattr(self, key) >= 0, source, key, getattr(self, key), "0 or more")
        require(self.lr > 0, source, "lr", self.lr, "a positive number")
        require(self.scale > 0, source, "scale", self.scale, "a positive number")
        require(0 < self.val_percent < 100, source, "val_percent", self.val_percent,
                "between 0 and 100 (exclusive)")
        require(self.optimizer in OPTIMIZERS, source, "optimizer", self.optimizer,
                " or ".join(OPTIMIZERS))
        require(self.scheduler in SCHEDULERS, source, "scheduler", self.scheduler,
                " or ".join(SCHEDULERS))
        require(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
                source, "device", self.device, "auto, cpu, cuda or cuda:N")
        require(self.grad_clip >= 0, source, "grad_clip", self.grad_clip, "0 (off) or more")
