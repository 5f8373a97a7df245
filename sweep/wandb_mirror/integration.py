"""What the sweep's driver calls: build the mirror's callback for an experiment (the driver
finishes it with ``WandbMirrorCallback.finish``). Trials use ``val_images.val_panel_reporter``,
which imports none of this."""
from __future__ import annotations

import json
from pathlib import Path

from sweep.rundir import SPEED_PROBE_FILE
from sweep.wandb_mirror.callback import make_wandb_callback
from sweep.wandb_mirror.settings import WandbSettings
from sweep.wandb_mirror.sweep_config import build_sweep_config

RUNTIME_KEYS = ("out_dir", "load")  # per trial, not settings worth a W&B column


def mirror_callback(experiment, run_dir: str | Path, data=None, outcomes=None,
                    metric: str = "val_dice", mode: str = "max"):
    """The W&B mirror of ``experiment`` (a ``sweep.experiment.Experiment``), or None.
    ``outcomes``: the sweep's outcome owner (sweep/outcome.py)."""
    settings = WandbSettings.from_dict(experiment.wandb, f"{experiment.name}: wandb")
    scheduler = experiment.scheduler
    sweep_config = build_sweep_config(
        experiment.name, experiment.space, metric, mode,
        scheduler={"max_t": scheduler.max_epochs, "grace_period": scheduler.grace_period,
                   "reduction_factor": scheduler.reduction_factor},
        trials=experiment.search.trials, sampler=experiment.search.sampler,
        objectives=experiment.search.objective_list())
    fixed = {k: v for k, v in experiment.train.to_dict().items() if k not in RUNTIME_KEYS}
    fixed["epochs"] = scheduler.max_epochs
    probe = Path(run_dir) / SPEED_PROBE_FILE  # which num_workers every trial got, and why
    if probe.exists():
        fixed["speed_probe"] = json.loads(probe.read_text())
    dataset = {"fingerprint": data.fingerprint(), "source": data.source,
               "images": len(data), "shape": data.describe_sizes(),
               "mask_values": list(data.mask_values)} if data is not None else None
    return make_wandb_callback(settings, experiment.name, run_dir, metric=metric, mode=mode,
                               max_epochs=scheduler.max_epochs, sweep_config=sweep_config,
                               dataset=dataset, fixed_config=fixed, outcomes=outcomes,
                               objectives=experiment.search.objective_list())
