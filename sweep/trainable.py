"""The Ray Tune trainable: a thin adapter over ``training.loop.train``.

Each epoch becomes ``tune.report(metrics, checkpoint=...)``; a restarted trial resumes from
``tune.get_checkpoint()``. The data set arrives once per sweep through the object store
(``tune.with_parameters``) as a reference to its decoded disk cache, which the trial maps. A
trial that runs out of memory is recorded as infeasible (a small file in the trial storage,
infeasible/, that the driver reads) instead of being retried: the same config would only run
out of memory again. A trial whose worker was killed for memory (no Python error) is recorded
so by the driver (TrialOutcomes.retry), and Tune's retry of it returns at once.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from ray import tune

from data_pipeline import SegmentationData
from sweep.experiment import Experiment
from sweep.failures import is_out_of_memory, ride_out
from sweep.faults import Faults, damage_file, fault_injector, pace
from sweep.rundir import (
    CHECKPOINT_DIRS,
    CHECKPOINT_FILE,
    FIRST_STEP_KEY,
    METRIC,
    NODE_KEY,
    NOTICE_KEY,
    REPORTED_AT_KEY,
    SEED_CHECKPOINT,
    TrialStorage,
    infeasible_reason,
    read_result_rows,
    record_infeasible,
)
from sweep.trials import number_from_name
from sweep.wandb_mirror.val_images import val_panel_reporter
from training.checkpoints import CheckpointError, load_checkpoint
from training.cost_keys import COST_KEYS
from training.errors import error_line
from training.loop import EpochState
from training.replicates import train_replicates

log = logging.getLogger(__name__)

OUT_OF_MEMORY = (torch.OutOfMemoryError, MemoryError)  # what always means out of memory


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is running out of memory. torch raises its OutOfMemoryError on CUDA
    only; on CPU the allocator's failure is a plain RuntimeError whose text says so (as are
    cuBLAS's and cuDNN's failed workspace allocations on a GPU)."""
    if isinstance(error, OUT_OF_MEMORY):
        return True
    return isinstance(error, RuntimeError) and is_out_of_memory(str(error))


def train_trial(config: dict, *, data: SegmentationData, experiment: Experiment,
                storage: TrialStorage,
                candidates: list[dict] | None = None, finished: frozenset = frozenset(),
                faults: Faults | None = None, epoch_delays: tuple[float | dict, ...] = ()) -> None:
    """One trial. ``config`` holds the searched settings, or (confirm runs) a candidate index
    and a seed; ``finished`` names trials the driver already recorded as done (resume). Test
    hooks, empty in real sweeps: ``faults`` (sweep/faults.py) and ``epoch_delays``, which
    paces trial number i by epoch_delays[i] (seconds an epoch, or a trial it reports after)."""
    context = tune.get_context()
    trial_id = context.get_trial_id()
    if trial_id in finished:
        return  # finished before the driver died, after Ray's last snapshot: never rerun
    if infeasible_reason(storage, trial_id):
        return  # the driver's verdict on a worker killed for memory: a retry would die again
    params = trial_params(config, candidates)
    number = number_from_name(context.get_trial_name())
    delay = epoch_delays[number] if number is not None and number < len(epoch_delays) else 0.0
    try:
        run_epochs(params, data, experiment, faults, delay, storage)
    except Exception as error:  # noqa: BLE001 - anything but out-of-memory is raised again
        if not out_of_memory(error):
            raise
        reason = f"out of memory: {error_line(error, 300, named=False)}"
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
               faults: Faults | None = None, delay: float | dict = 0.0,
               storage: TrialStorage | None = None) -> None:
    checkpoint = tune.get_checkpoint()
    # Confirm runs pin one seed in params; sweep trials train every seed of the experiment.
    seeds = [params["seed"]] if "seed" in params else experiment.seeds()
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trial-")))
        folder = Path(stack.enter_context(checkpoint.as_directory())) if checkpoint else None
        notice = ""
        if folder is not None:
            folder, notice = checkpoint_to_resume(folder, seeds)
            if notice:  # the worker's log; the driver prints it from the first result
                log.warning("trial %s: %s", tune.get_context().get_trial_id(), notice)
        if (folder is not None and storage is not None
                and trained_epochs(resume_file(folder, seeds[0] if len(seeds) > 1 else None))
                >= experiment.scheduler.max_epochs):
            report_last_result(storage)
            return
        # Locally only the newest epoch is kept; Ray stores the reported ones.
        configs = [experiment.trial_config(
            {**params, "seed": seed}, out_dir=str(work_dir / f"seed{seed}"),
            load=str(resume_file(folder, seed if len(seeds) > 1 else None)) if folder else "",
            keep_checkpoints=1) for seed in seeds]
        report = make_reporter(experiment, params, data, resumed=checkpoint is not None,
                               faults=faults, delay=delay, storage=storage, notice=notice)
        train_replicates(configs, data, report=report)


def resume_file(folder: Path, seed: int | None = None) -> Path:
    """The checkpoint to resume from (``seed``: that seed's, in a several-seed trial). A
    driver killed between registering a new checkpoint (which let Ray delete an older one)
    and saving its state points the resumed trial at the deleted one: then the newest one
    beside it is the trial's true last state."""
    name = CHECKPOINT_FILE if seed is None else SEED_CHECKPOINT.format(seed=seed)
    if (folder / name).exists():
        return folder / name
    newer = sorted(folder.parent.glob(f"{CHECKPOINT_DIRS}/{name}"))
    return newer[-1] if newer else folder / name  # none: the load error names it


def readable_checkpoint(folder: Path, seeds: list[int], trial_id: str = "") -> Path | None:
    """The checkpoint folder to resume from (checkpoint_to_resume), its line logged here."""
    chosen, notice = checkpoint_to_resume(folder, seeds)
    if notice:
        log.warning("trial %s: %s", trial_id, notice)
    return chosen


def checkpoint_to_resume(folder: Path, seeds: list[int]) -> tuple[Path | None, str]:
    """The checkpoint folder to resume from: Tune's, unless one of its files cannot be read
    (damaged in the trial storage); then the newest other one of the trial's that can, else
    None: the trial trains from scratch, which with the same seed gives the same metrics (the
    loop's randomness is a function of the seed and the epoch). With it, the line that says
    which ("" when Tune's was sound)."""
    keys = [None] if len(seeds) == 1 else seeds
    damage = unreadable(folder, keys)
    if damage is None:
        return folder, ""
    others = sorted((p for p in folder.parent.glob(CHECKPOINT_DIRS) if p != folder), reverse=True)
    fallback = next((other for other in others if unreadable(other, keys) is None), None)
    instead = (f"restarting from {fallback.name} (epoch {trained_epochs(resume_file(fallback))})"
               if fallback else "restarting from scratch (same seed: same metrics)")
    return fallback, f"its checkpoint cannot be read ({damage}); {instead}"


def unreadable(folder: Path, keys: list[int | None]) -> str | None:
    """Why a checkpoint folder's files (one per seed) cannot be loaded; None when they can."""
    for key in keys:
        try:
            load_checkpoint(str(resume_file(folder, key)))
        except CheckpointError as error:
            return str(error)
    return None


def trained_epochs(checkpoint_file: Path) -> int:
    try:
        return int(load_checkpoint(str(checkpoint_file)).get("epoch", 0))
    except CheckpointError:
        return 0  # the loop's own load names the problem


def report_last_result(storage: TrialStorage) -> None:
    """A trial that trained its last epoch after Ray's last snapshot of a killed driver: Ray
    resumes it from that epoch's checkpoint, with nothing left to train. Its last result is said
    again (no checkpoint), so Tune, ASHA, Optuna and trial_status.json see how it ended."""
    context = tune.get_context()
    rows = read_result_rows(storage, context.get_experiment_name(), context.get_trial_id())
    last = next((row for row in reversed(rows) if METRIC in row), {})
    tune.report({key: value for key, value in last.items() if is_loop_key(key)})


# What the training loop reports each epoch (training.loop.train; with several seeds also
# training/replicates.py's std and per-seed values), the node it ran on and the trial's GPUs.
LOOP_KEYS = ("epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "epoch_seconds",
             "samples_per_s", "gpu_peak_mem_mb", "train_samples", "gpu_ids", NODE_KEY,
             *COST_KEYS)


def is_loop_key(key: str) -> bool:
    return key in LOOP_KEYS or key.startswith(("val_dice_", "val_iou_"))


def make_reporter(experiment: Experiment, params: dict, data: SegmentationData | None = None,
                  resumed: bool = False, faults: Faults | None = None, delay: float | dict = 0.0,
                  storage: TrialStorage | None = None, notice: str = ""):
    """``report(metrics, states)`` for training.loop.train. ``storage``: the trial storage; a
    URI one is waited for while it is unreachable (failures.ride_out) before and while Ray
    uploads the epoch's checkpoint, so a short outage does not fail the trial (which Tune
    would then retry from its last checkpoint, downloading it from that same storage).
    ``notice``: a line for the user, sent with the first result (NOTICE_KEY): Ray does not
    forward a trial's log to the driver."""
    inject_faults = fault_injector(faults, params, resumed)
    first_epoch = None
    node_id = this_node()
    # W&B validation panels (image | true | predicted) at the chosen epochs; None when off.
    add_panel = (val_panel_reporter(experiment.wandb, data, experiment.scheduler.max_epochs,
                                    storage) if data is not None else None)
    gpu_ids = trial_gpu_ids()

    def report(metrics: dict, states: list[EpochState]) -> None:
        nonlocal first_epoch
        damage = inject_faults(states[0].epoch)  # True: a damaged checkpoint (tests only)
        if delay:  # tests only (sweep/faults.py: pace)
            pace(delay, states[0].epoch, storage.run_dir if storage is not None else None)
        if first_epoch is None:
            first_epoch = states[0].epoch
            # When this run of the trial took its first training step (the epoch's clock
            # starts just before it): the driver measures start-up from placement to here.
            metrics[FIRST_STEP_KEY] = time.time() - metrics["epoch_seconds"]
            if notice:
                metrics[NOTICE_KEY] = notice
        metrics["gpu_ids"] = gpu_ids  # the report's throughput per GPU
        metrics[REPORTED_AT_KEY] = time.time()  # when the epoch ended, finer than Ray's stamp
        metrics[NODE_KEY] = node_id  # which node trained this epoch
        if add_panel:
            add_panel(metrics, states[0])  # the first seed's model
        with tempfile.TemporaryDirectory(prefix="report-") as folder:
            # checkpoint.pth is the first seed's (best.pth, predict); with several seeds each
            # one's is also seed<S>.pth, which a resumed trial loads.
            link_or_copy(states[0].checkpoint_path, Path(folder) / CHECKPOINT_FILE)
            if len(states) > 1:
                for state in states:
                    link_or_copy(state.checkpoint_path,
                                 Path(folder) / SEED_CHECKPOINT.format(seed=state.config.seed))
            if damage:
                damage_file(Path(folder) / CHECKPOINT_FILE)
            # Ray copies the folder into the trial's storage before report returns.
            publish = lambda: tune.report(  # noqa: E731
                metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            if storage is None or storage.is_local:
                publish()
                return
            # First wait for the storage (a failed upload costs Ray a checkpoint index and an
            # iteration count), then retry the upload itself if the outage begins mid-way.
            what = f"trial {tune.get_context().get_trial_id()}, epoch {states[0].epoch}"
            ride_out(storage.exists, f"{what}: checking the trial storage")
            ride_out(publish, f"{what}: uploading its checkpoint")

    return report


def trial_gpu_ids() -> str:
    """The GPUs Ray gave this trial ("0", "0,1"; "" on CPU): Ray sets CUDA_VISIBLE_DEVICES to
    them, so a fractional trial knows which card it shares."""
    import ray

    if not ray.is_initialized():  # outside a Ray worker: get_gpu_ids() would start a Ray
        return ""
    return ",".join(str(i) for i in ray.get_gpu_ids())


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

