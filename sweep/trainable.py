"""The Ray Tune trainable: a thin adapter over ``training.loop.train``.

Each epoch becomes ``tune.report(metrics, checkpoint=...)``; a restarted trial resumes from
``tune.get_checkpoint()``. The decoded data set arrives once per sweep through the object store
(``tune.with_parameters``). A trial that runs out of memory is recorded as infeasible (a small
file under the run directory that the driver reads) instead of being retried: the same config
would only run out of memory again.
"""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
from pathlib import Path

import torch
from ray import tune

from data_pipeline import SegmentationData
from sweep.experiment import Experiment
from sweep.faults import Faults, fault_injector
from sweep.rundir import (
    CHECKPOINT_FILE,
    METRIC,
    NODE_KEY,
    TrialStorage,
    read_result_rows,
    record_infeasible,
)
from sweep.wandb_mirror.val_images import val_panel_reporter
from training.checkpoints import CheckpointError, load_checkpoint
from training.loop import EpochState, train

OUT_OF_MEMORY = (torch.OutOfMemoryError, MemoryError)


def train_trial(config: dict, *, data: SegmentationData, experiment: Experiment,
                storage: TrialStorage,
                candidates: list[dict] | None = None, finished: frozenset = frozenset(),
                faults: Faults | None = None) -> None:
    """One trial. ``config`` holds the searched settings, or (confirm runs) a candidate index
    and a seed; ``finished`` names trials the driver already recorded as done (resume);
    ``faults`` is the tests' fault injection (sweep/faults.py), None in real sweeps."""
    trial_id = tune.get_context().get_trial_id()
    if trial_id in finished:
        return  # finished before the driver died, after Ray's last snapshot: never rerun
    params = trial_params(config, candidates)
    try:
        run_epochs(params, data, experiment, faults, storage)
    except OUT_OF_MEMORY as error:
        reason = f"out of memory: {' '.join(str(error).split())[:300]}"
    else:
        return
    # Outside the except block, so the traceback (and the model it pins) is gone first.
    free_memory()
    record_infeasible(storage, trial_id, reason)


def trial_params(config: dict, candidates: list[dict] | None) -> dict:
    if candidates is None:
        return dict(config)
    return {**candidates[config["candidate"]], "seed": config["seed"]}


def run_epochs(params: dict, data: SegmentationData, experiment: Experiment,
               faults: Faults | None, storage: TrialStorage) -> None:
    checkpoint = tune.get_checkpoint()
    with contextlib.ExitStack() as stack:
        work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="trial-"))
        load = ""
        if checkpoint is not None:
            load = str(resume_file(Path(stack.enter_context(checkpoint.as_directory()))))
            if trained_epochs(load) >= experiment.scheduler.max_epochs:
                report_last_result(storage)
                return
        # Locally only the newest epoch is kept; Ray stores the reported ones.
        config = experiment.trial_config(params, out_dir=work_dir, load=load, keep_checkpoints=1)
        report = make_reporter(experiment, params, data, resumed=checkpoint is not None,
                               faults=faults)
        train(config, data, report=report)


def trained_epochs(checkpoint_file: str) -> int:
    try:
        return int(load_checkpoint(checkpoint_file).get("epoch", 0))
    except CheckpointError:
        return 0  # the loop's own load names the problem


def report_last_result(storage: TrialStorage) -> None:
    """A trial that trained its last epoch after Ray's last snapshot of a killed driver: Ray
    resumes it from that epoch's checkpoint, with nothing left to train. Its last result is said
    again (no checkpoint), so Tune, ASHA, Optuna and trial_status.json see how it ended."""
    context = tune.get_context()
    rows = read_result_rows(storage, context.get_experiment_name(), context.get_trial_id())
    last = next((row for row in reversed(rows) if METRIC in row), {})
    tune.report({key: value for key, value in last.items() if key in LOOP_KEYS})


# What the training loop reports each epoch (training.loop.train) and the node it ran on.
LOOP_KEYS = ("epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "epoch_seconds",
             "samples_per_s", "gpu_peak_mem_mb", NODE_KEY)


def resume_file(folder: Path) -> Path:
    """The checkpoint to resume from. A driver killed between registering a new checkpoint
    (which let Ray delete an older one) and saving its state points the resumed trial at the
    deleted one: then the newest one beside it is the trial's true last state."""
    if (folder / CHECKPOINT_FILE).exists():
        return folder / CHECKPOINT_FILE
    newer = sorted(folder.parent.glob(f"checkpoint_*/{CHECKPOINT_FILE}"))
    return newer[-1] if newer else folder / CHECKPOINT_FILE  # none: the load error names it


def make_reporter(experiment: Experiment, params: dict, data: SegmentationData | None = None,
                  resumed: bool = False, faults: Faults | None = None):
    inject_faults = fault_injector(faults, params, resumed)
    node_id = this_node()
    # W&B validation panels (image | true | predicted) at the chosen epochs; None when off.
    add_panel = (val_panel_reporter(experiment.wandb, data, experiment.scheduler.max_epochs)
                 if data is not None else None)

    def report(metrics: dict, state: EpochState) -> None:
        inject_faults(state.epoch)
        metrics = {**metrics, NODE_KEY: node_id}  # which node trained this epoch
        if add_panel:
            add_panel(metrics, state)
        with tempfile.TemporaryDirectory(prefix="report-") as folder:
            link_or_copy(state.checkpoint_path, Path(folder) / CHECKPOINT_FILE)
            # Ray copies the folder into the trial's storage before report returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    return report


def this_node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

