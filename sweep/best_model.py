"""best.pth and best_config.yaml: the model a sweep hands over, written the same way whoever
chose it (the end of a sweep: its best trial, or the front's default pick with several
objectives; `pick`: the front trial meeting the user's constraints). Light on purpose (no Ray,
no torch): `pick` runs without starting either."""
from __future__ import annotations

from pathlib import Path

import yaml

from sweep.experiment import Experiment
from sweep.rundir import (
    BEST_CHECKPOINT,
    BEST_CONFIG,
    METRIC,
    RETRAIN_DIR,
    TrialRecord,
    TrialStorage,
    write_text,
)


def write_best_model(experiment: Experiment, run_dir: Path, storage: TrialStorage,
                     record: TrialRecord, row: dict, note: str = "") -> dict:
    """best.pth from the checkpoint of ``row`` (an epoch of ``record``), best_config.yaml from
    the trial's params; ``note``: one more comment line at the top of best_config.yaml. Returns
    what the W&B mirror's finish takes (best_checkpoint, best_config, best_metrics,
    best_trial)."""
    storage.download(record.checkpoint_parts(row), run_dir / BEST_CHECKPOINT)
    config = experiment.trial_config(record.params, out_dir=str(run_dir / RETRAIN_DIR))
    best_config = {k: v for k, v in config.to_dict().items() if k != "load"}
    header = seeds_header(experiment, row) + (f"# {note}\n" if note else "")
    write_text(run_dir / BEST_CONFIG, header + yaml.safe_dump(best_config, sort_keys=False))
    return {"best_checkpoint": run_dir / BEST_CHECKPOINT, "best_config": best_config,
            "best_metrics": {METRIC: float(row[METRIC]), "epoch": int(row["epoch"])},
            "best_trial": record.trial_id}


def seeds_header(experiment: Experiment, row: dict) -> str:
    """best_config.yaml's first lines: the seeds behind its val_dice (`seed` below is the
    first; `train --config` trains that one, --seed another)."""
    seeds = experiment.seeds()
    spread = (f" +- {row[METRIC + '_std']:.4f} (std over seeds: "
              + ", ".join(f"{s}: {row[f'{METRIC}_seed{s}']:.4f}" for s in seeds) + ")"
              if len(seeds) > 1 and f"{METRIC}_std" in row else "")
    return (f"# seeds: {seeds}\n# {METRIC} at epoch {row['epoch']}: {row[METRIC]:.4f}{spread}"
            f"{' (mean)' if len(seeds) > 1 else ''}\n")
