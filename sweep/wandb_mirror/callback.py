"""The driver-side Tune callback: it only turns Tune events into small records and queues them;
the writer process does every W&B call. Build it with ``make_wandb_callback``."""
from __future__ import annotations

import atexit
import json
import logging
import secrets
import string
from pathlib import Path

from ray.tune import Callback

from sweep import rundir
from sweep.outcome import TrialOutcomes
from sweep.wandb_mirror import records
from sweep.wandb_mirror.channel import MirrorChannel
from sweep.wandb_mirror.settings import WandbSettings, resolve_mode
from sweep.wandb_mirror.sweep_config import write_sweep_yaml

log = logging.getLogger(__name__)


def make_wandb_callback(settings: dict | WandbSettings | None, experiment_name: str,
                        run_dir: str | Path, *, metric: str = "val_dice", mode: str = "max",
                        max_epochs: int | None = None, sweep_config: dict | None = None,
                        dataset: dict | None = None, fixed_config: dict | None = None,
                        outcomes: TrialOutcomes | None = None,
                        objectives: list[tuple[str, str]] | None = None
                        ) -> WandbMirrorCallback | None:
    """The mirror for one sweep, or None when W&B is disabled.

    ``sweep_config`` (from ``sweep_config.build_sweep_config``) is written to
    ``run_dir/wandb_sweep.yaml``; ``dataset`` is ``{"fingerprint": .., "source": {..}}``;
    ``fixed_config`` holds the settings every trial shares (a run's config is those plus the
    trial's own); ``outcomes``, the sweep's outcome owner, gives each trial's final state (by
    default one of the mirror's own, over the trial storage the run directory's
    experiment.yaml names); ``objectives``, a multi-objective sweep's [(metric, mode), ...]
    (``metric`` is the first): the summary run then holds the Pareto front.
    """
    if not isinstance(settings, WandbSettings):
        settings = WandbSettings.from_dict(settings, "wandb")
    wandb_mode = resolve_mode(settings)
    if wandb_mode == "disabled":
        return None
    run_dir = Path(run_dir).resolve()
    sweep_config = sweep_config or {"name": experiment_name, "method": "bayes",
                                     "metric": {"name": metric}, "parameters": {}}
    write_sweep_yaml(run_dir / rundir.WANDB_SWEEP_FILE, sweep_config)
    # No sweep id here: offline runs are tied by their group (the experiment's name), their
    # config and mirror.json; `wandb-sync` creates the W&B sweep after uploading them.
    plan = {
        "experiment": experiment_name, "run_dir": str(run_dir), "mode": wandb_mode,
        "project": settings.resolved_project(), "entity": settings.resolved_entity(),
        "summary_run_id": summary_run_id(run_dir),
        "sweep_config": sweep_config, "metric": metric, "metric_mode": mode,
        "max_epochs": max_epochs, "dataset": dataset or {}, "artifacts": settings.artifacts,
        "fixed_config": records.json_safe(fixed_config or {}),
        # several search.objectives: the summary run holds their Pareto front (pareto.csv)
        "objectives": [list(pair) for pair in objectives or []],
    }
    outcomes = outcomes or TrialOutcomes(rundir.storage_of(run_dir), max_epochs or 0)
    return WandbMirrorCallback(plan, settings.drain_timeout_s, outcomes)


def summary_run_id(run_dir: Path) -> str:
    """The summary run's W&B id: kept from an earlier start (resume), else new. Random, so
    two sweeps of one experiment never share it in a project."""
    try:
        saved = json.loads((run_dir / rundir.MIRROR_FILE).read_text())
        kept = saved.get("summary_run_id") or (saved.get("summary_run") or {}).get("run_id")
        if kept:
            return kept
    except (OSError, ValueError, AttributeError):
        pass
    alphabet = string.ascii_lowercase + string.digits  # W&B's own ids look like this
    return "summary-" + "".join(secrets.choice(alphabet) for _ in range(8))


class WandbMirrorCallback(Callback):
    def __init__(self, plan: dict, drain_timeout_s: float, outcomes: TrialOutcomes):
        self.plan = plan
        self.drain_timeout_s = drain_timeout_s
        self.outcomes = outcomes
        self.channel: MirrorChannel | None = None

    # Tune pickles its callbacks with the experiment (for resume): the process stays behind.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "channel": None}

    def relocate(self, run_dir: Path, storage=None) -> None:
        """A resumed run directory that was copied or moved: the runs go into ``run_dir``'s
        wandb/, not into the directory this callback was pickled in (before ``setup``)."""
        self.plan = {**self.plan, "run_dir": str(Path(run_dir).resolve())}

    def setup(self, **info) -> None:
        self.start()

    def start(self) -> None:
        if self.channel is None:
            self.channel = MirrorChannel(self.plan)
            atexit.register(self.close)  # a driver that forgets close() still loses nothing

    def send(self, record: dict) -> None:
        self.start()
        self.channel.send(record)

    # ---- Tune events -------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = records.run_config({**self.plan["fixed_config"], **trial.config},
                                    trial.trial_id, self.plan["experiment"],
                                    {"data_fingerprint": self.plan["dataset"].get("fingerprint")})
        self.send({"kind": "trial_start", "trial_id": trial.trial_id,
                   "run_id": records.run_id(trial.trial_id),
                   "name": records.run_name(self.plan["experiment"], trial.trial_id),
                   "config": config})

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        image = result.get(records.IMAGE_KEY)
        image = image if isinstance(image, str) else None
        panel_parts = None
        if image and not Path(image).is_absolute():
            # In the trial's folder of the trial storage (the trial may have run on another
            # node): the writer reads it from there, as (experiment folder, trial folder, ...).
            panel_parts = [trial.experiment_dir_name, trial.storage.trial_dir_name,
                           *image.split("/")]
            image = None
        self.send({"kind": "result", "trial_id": trial.trial_id, "step": records.step_of(result),
                   "row": records.metric_row(result), "image": image,
                   "panel_parts": panel_parts})

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.end_trial(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.end_trial(trial, errored=True)

    def end_trial(self, trial, errored: bool) -> None:
        # The sweep's own outcome: trial_status.json's words, and the searcher's.
        state, reason = self.outcomes.of_trial(trial, errored)
        self.send({"kind": "trial_end", "trial_id": trial.trial_id, "state": state,
                   "reason": reason})

    # ---- after the sweep -------------------------------------------------------------------
    def finish(self, best_checkpoint: str | Path | None = None, best_config: dict | None = None,
               best_metrics: dict | None = None, best_trial: str | None = None) -> bool:
        """End of a sweep (run or resume): hand over the best model, if there is one, then
        finish every run and wait for the writer (``close``). A no-op for a mirror that never
        started (no Tune run) or is finished already."""
        if self.channel is None:
            return True
        if best_checkpoint and Path(best_checkpoint).is_file():
            self.log_best_model(best_checkpoint, best_config or {}, best_metrics or {},
                                best_trial)
        return self.close()

    def log_best_model(self, path: str | Path, config: dict, metrics: dict,
                       trial_id: str | None = None) -> None:
        """The sweep's best checkpoint (``best.pth``) as a model artifact, at ``close``."""
        self.send({"kind": "model", "path": str(Path(path).resolve()),
                   "config": records.json_safe(config), "metrics": records.metric_row(metrics),
                   "trial_id": trial_id})

    def close(self) -> bool:
        """Finish every run and wait for the writer (at most ``drain_timeout_s``)."""
        channel, self.channel = self.channel, None
        if channel is None:
            return True
        atexit.unregister(self.close)
        channel.send({"kind": "close"})
        return channel.close(self.drain_timeout_s)

