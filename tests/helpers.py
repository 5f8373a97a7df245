"""Small builders shared by the tests: tiny configs and data that train in about a second."""
from __future__ import annotations

from training.config import TrainConfig
from training.cost_keys import LOAD_DEPENDENT

# Wall-clock and machine-load metrics: left out of exact comparisons (params and flops stay in).
TIMING_KEYS = {"epoch_seconds", "samples_per_s", "gpu_peak_mem_mb", *LOAD_DEPENDENT}
# experiments/smoke.yaml's data and model made ~20x cheaper an epoch (UNet width 4 on 40 images of
# 32 px, 8 validated), for sweeps whose point is the sweep's machinery, not what trials learn.
TINY_DATA = ["--train.width=4", "--train.synthetic_images=40", "--train.synthetic_size=32",
             "--train.val_percent=20"]


def tiny_config(tmp_path, **changes) -> TrainConfig:
    values = dict(model="unet", width=4, synthetic_images=20, synthetic_size=32, epochs=2,
                  batch_size=4, eval_batch_size=4, val_percent=20, lr=1e-3, threads=1,
                  out_dir=str(tmp_path / "run"))
    values.update(changes)
    return TrainConfig.from_dict(values, "test")


def results_only(history: list[dict]) -> list[dict]:
    """Per-epoch metrics without the wall-clock ones, for exact comparisons."""
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]
