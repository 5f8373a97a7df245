"""What the sweep calls: one function each for the runner (build the callback, finish the
mirror) and the trainable (render validation panels at the chosen epochs)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from sweep.rundir import SPEED_PROBE_FILE
from sweep.wandb_mirror.callback import finish_mirror, make_wandb_callback
from sweep.wandb_mirror.records import IMAGE_KEY
from sweep.wandb_mirror.settings import WandbSettings, resolve_mode
from sweep.wandb_mirror.sweep_config import build_sweep_config

__all__ = ["finish_mirror", "mirror_callback", "val_panel_reporter"]
log = logging.getLogger(__name__)
RUNTIME_KEYS = ("out_dir", "load")  # per trial, not settings worth a W&B column


def mirror_callback(experiment, run_dir: str | Path, data=None, status_log=None,
                    metric: str = "val_dice", mode: str = "max"):
    """The W&B mirror of ``experiment`` (a ``sweep.experiment.Experiment``), or None."""
    settings = WandbSettings.from_dict(experiment.wandb, f"{experiment.name}: wandb")
    scheduler = experiment.scheduler
    sweep_config = build_sweep_config(
        experiment.name, experiment.space, metric, mode,
        scheduler={"max_t": scheduler.max_epochs, "grace_period": scheduler.grace_period,
                   "reduction_factor": scheduler.reduction_factor},
        trials=experiment.search.trials)
    fixed = {k: v for k, v in experiment.train.to_dict().items() if k not in RUNTIME_KEYS}
    fixed["epochs"] = scheduler.max_epochs
    probe = Path(run_dir) / SPEED_PROBE_FILE  # which num_workers every trial got, and why
    if probe.exists():
        fixed["speed_probe"] = json.loads(probe.read_text())
    dataset = {"fingerprint": data.fingerprint(), "source": data.source,
               "images": len(data), "shape": list(data.images.shape[1:]),
               "mask_values": list(data.mask_values)} if data is not None else None
    return make_wandb_callback(settings, experiment.name, run_dir, metric=metric, mode=mode,
                               max_epochs=scheduler.max_epochs, sweep_config=sweep_config,
                               dataset=dataset, fixed_config=fixed, status_log=status_log)


def val_panel_reporter(wandb_section: dict, data, max_epochs: int):
    """Inside a trial: a function ``(metrics, state)`` that renders a validation panel at the
    chosen epochs into the trial's folder and puts its path in ``metrics`` (the mirror logs
    it as an image); None when W&B or images are off."""
    settings = WandbSettings.from_dict(wandb_section, "wandb")
    # The callback's own resolution: WANDB_MODE=disabled in a trial's environment turns it off.
    if resolve_mode(settings) == "disabled" or not settings.image_count:
        return None
    from data_pipeline import split_indices
    from sweep.wandb_mirror.val_images import render_epochs, render_val_panel

    epochs = render_epochs(settings.image_epochs, max_epochs)

    def add_panel(metrics: dict, state) -> None:
        if state.epoch not in epochs:
            return
        from ray import tune

        _, val = split_indices(len(data), state.config.val_percent, state.config.split_seed)
        folder = Path(tune.get_context().get_trial_dir()) / "val_images"
        try:
            path = render_val_panel(state.model, data, val, settings.image_count,
                                    folder / f"epoch_{state.epoch:03d}.png")
        except Exception as error:  # a picture is never worth a trial
            log.warning("validation panel not rendered at epoch %d: %s", state.epoch, error)
            return
        metrics[IMAGE_KEY] = str(path)

    return add_panel
