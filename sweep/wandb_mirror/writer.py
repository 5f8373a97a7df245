"""The logging side of the mirror: turns the callback's records into W&B runs.

One instance serves a whole sweep, in its own low-priority process (``python -m
sweep.wandb_mirror.writer``, records as JSON lines on stdin), so W&B's machinery never competes
with trials for the driver's time. Tests drive ``MirrorWriter`` in-process.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sweep import rundir
from sweep.wandb_mirror.front import front_rows
from sweep.wandb_mirror.history import sweep_history
from sweep.wandb_mirror.records import IMAGE_KEY, best_summary, metric_row, step_of
from training.atomic import DiskFullError
from training.errors import error_line

NICENESS = 10  # below the trials: on a busy machine, W&B writing waits, training does not
# The sweep's own words for a trial's fate (sweep/rundir.py): W&B's summary.state and tag.
# A run left RUNNING when the sweep stops is continued by `resume` in a new folder, same id.
NOT_OK = (rundir.FAILED, rundir.INFEASIBLE, rundir.RUNNING)  # exit code 1 in W&B
STOPPED_REASON = "the sweep stopped before this trial ended; `python -m sweep resume` continues it"


@dataclass
class OpenRun:
    run: object  # wandb.Run
    run_id: str
    rows: list[dict] = field(default_factory=list)
    last_step: int = 0


class MirrorWriter:
    """Handles records: plan (first), trial_start, result, trial_end, model, close."""

    def __init__(self, plan: dict, report=None):
        self.plan = plan
        self.mode = plan["mode"]
        # Online only: the W&B sweep that runs join as they start. Offline runs carry no sweep
        # id; they are tied by group (the experiment's name), config and this status file.
        self.sweep_id: str | None = None
        self.root = Path(plan["run_dir"])
        self.runs: dict[str, OpenRun] = {}
        self.status = {"mode": self.mode, "project": plan["project"], "entity": plan["entity"],
                       "group": plan["experiment"], "summary_run_id": plan["summary_run_id"],
                       "runs": {}, "summary_run": None, "error": None,
                       **earlier_status(self.root)}  # a resumed sweep keeps its earlier runs
        self.report = report or print_once
        self.broken = False
        self.model: dict | None = None
        self.wandb = None
        self.closed = False

    # ---- dispatch ------------------------------------------------------------------------
    def handle(self, record: dict) -> None:
        kind = record["kind"]
        if kind == "close":
            return self.close()
        if self.broken:
            return
        try:
            if self.wandb is None:
                self.start()
            getattr(self, "on_" + kind)(record)
        except Exception as error:  # W&B must never take the sweep down: say it once, go on
            self.fail(f"{kind} record", error)

    def fail(self, doing: str, error: BaseException) -> None:
        self.broken = True
        message = described(error)
        self.status["error"] = f"{doing}: {message}"
        self.report(f"W&B mirror stopped ({doing}: {message}); the sweep goes on without it")
        self.save_status()

    # ---- start: the sweep ---------------------------------------------------------------
    def start(self) -> None:
        import wandb

        self.wandb = wandb
        if self.mode == "online":
            # Created once, before the first run; a resumed sweep keeps its W&B sweep.
            self.sweep_id = self.status.get("online_sweep_id") or self.create_sweep()
        if self.mode == "online":
            self.status["online_sweep_id"] = self.sweep_id
        self.status["mode"] = self.mode
        self.save_status()

    def create_sweep(self) -> str | None:
        try:
            return self.wandb.sweep(self.plan["sweep_config"], project=self.plan["project"],
                                    entity=self.plan["entity"])
        except Exception as error:
            self.fall_back_offline("creating the W&B sweep", error)
            return None

    def fall_back_offline(self, doing: str, error: BaseException) -> None:
        self.report(f"W&B mirror: {doing} failed ({described(error)}); writing offline runs "
                    f"instead (upload later with `python -m sweep wandb-sync {self.root}`)")
        self.mode, self.sweep_id = "offline", None

    # ---- trials ---------------------------------------------------------------------------
    def on_trial_start(self, record: dict) -> None:
        trial_id = record["trial_id"]
        earlier = self.status["runs"].get(trial_id, {})
        if trial_id in self.runs or earlier.get("state") in rundir.ENDED:
            return  # restored after an error (run still open), or ended before a resume
        run = self.init_run(record["run_id"], record["name"], record["config"],
                            job_type="trial", sweep_id=self.sweep_id)
        # An interrupted trial that a resume continues gets a second folder, same run id:
        # `wandb sync` uploads both, in order, into one run. It goes on from the last step
        # the first folder holds, and its summary still covers the epochs logged there.
        last_step = int(earlier.get("last_step", 0))
        self.runs[trial_id] = OpenRun(run, record["run_id"], self.logged_rows(trial_id, last_step),
                                      last_step)
        self.status["runs"][trial_id] = {"run_id": record["run_id"], "state": rundir.RUNNING,
                                         "mode": self.mode, "last_step": last_step,
                                         "dirs": earlier.get("dirs", []) + [self.relative(run)]}
        self.save_status()

    def logged_rows(self, trial_id: str, last_step: int) -> list[dict]:
        """Ray's rows of the epochs an earlier folder of this run logged (for its summary)."""
        if not last_step:
            return []
        rows = rundir.read_result_rows(rundir.storage_of(self.root), rundir.TUNE_DIR, trial_id)
        by_step = {step_of(row): metric_row(row) for row in rows}  # the last row per epoch
        return [by_step[step] for step in sorted(by_step) if step <= last_step]

    def on_result(self, record: dict) -> None:
        open_run = self.runs.get(record["trial_id"])
        if open_run is None or record["step"] <= open_run.last_step:
            return  # a step W&B already has (a trial restored from an earlier checkpoint)
        row = dict(record["row"])
        with self.panel_file(record) as image:
            if image:
                row[IMAGE_KEY] = self.wandb.Image(
                    str(image),
                    caption=f"epoch {record['step']}: image | true mask | predicted mask")
            open_run.run.log(row, step=record["step"])  # copies the image into the run
        open_run.rows.append(record["row"])
        open_run.last_step = record["step"]

    @contextlib.contextmanager
    def panel_file(self, record: dict) -> Iterator[Path | None]:
        """A result's validation panel as a local file while the run logs it: from the trial
        storage (where trials on any node put it; a bucket's copy is fetched into a temporary
        folder), or the absolute path of runs from before panels went there. None when there
        is none or it cannot be read."""
        parts = record.get("panel_parts")
        if not parts:
            image = record.get("image")
            yield Path(image) if image and Path(image).is_file() else None
            return
        if self.trial_storage.is_local:
            path = Path(self.trial_storage.path(*parts))
            yield path if path.is_file() else None
            return
        with tempfile.TemporaryDirectory(prefix="panel-") as scratch:
            yield self.download_panel(parts, Path(scratch) / parts[-1])

    def download_panel(self, parts: list[str], target: Path) -> Path | None:
        try:
            self.trial_storage.download(tuple(parts), target)
        except OSError as error:  # the storage unreachable: the metrics are logged without it
            print(f"wandb mirror: validation panel {self.trial_storage.where(*parts)} not read "
                  f"({described(error)}); its epoch is logged without it",
                  file=sys.stderr, flush=True)
            return None
        return target

    @functools.cached_property
    def trial_storage(self) -> rundir.TrialStorage:
        """Read once, when a panel needs it."""
        return rundir.storage_of(self.root)

    def on_trial_end(self, record: dict) -> None:
        open_run = self.runs.pop(record["trial_id"], None)
        if open_run is None:
            return
        self.finish_run(open_run, record["state"], record.get("reason", ""))
        self.status["runs"][record["trial_id"]].update(state=record["state"],
                                                       last_step=open_run.last_step)
        self.save_status()

    def finish_run(self, open_run: OpenRun, state: str, reason: str) -> None:
        run = open_run.run
        summary = best_summary(open_run.rows, self.plan["metric"], self.plan["metric_mode"])
        run.summary.update({**summary, "state": state, "state_reason": reason,
                            "epochs": open_run.last_step})
        run.tags = tuple(run.tags or ()) + (state,)
        run.finish(exit_code=1 if state in NOT_OK else 0)

    # ---- the sweep's data set and best model ----------------------------------------------
    def on_model(self, record: dict) -> None:
        self.model = record

    def close(self, interrupted: bool = False) -> None:
        """Finish every open run (so nothing is lost) and write the summary run.
        ``interrupted``: the driver went away without saying so (killed)."""
        if self.closed:
            return
        self.closed = True
        # Whether the driver was killed or stopped cleanly with trials unfinished (Ctrl-C, a
        # time budget), an open run stays RUNNING, as trial_status.json says: a resume goes on.
        for trial_id, open_run in list(self.runs.items()):
            self.guarded("finishing a run", self.finish_run, open_run, rundir.RUNNING,
                         STOPPED_REASON)
            self.status["runs"][trial_id].update(state=rundir.RUNNING,
                                                 last_step=open_run.last_step)
        self.runs.clear()
        if not interrupted and not self.broken and self.wandb:
            self.guarded("settling lost trials", self.settle_lost_trials)
        if not interrupted and not self.broken and self.wandb and (
                self.plan.get("artifacts") or self.plan.get("objectives")):
            self.guarded("writing the summary run", self.write_summary_run)
        self.save_status()

    def settle_lost_trials(self) -> None:
        """A trial the sweep gave up on while its run was closed (lost with a killed driver:
        trial_status.json says failed) gets that verdict in W&B too: one more folder, same id."""
        statuses = rundir.read_statuses(self.root)
        for trial_id, entry in self.status["runs"].items():
            final = statuses.get(trial_id, {})
            if entry["state"] != rundir.RUNNING or final.get("status") not in rundir.ENDED:
                continue
            run = self.init_run(entry["run_id"], f"{self.plan['experiment']}-{trial_id}", {},
                                job_type="trial", sweep_id=self.sweep_id)
            entry["dirs"] = entry.get("dirs", []) + [self.relative(run)]
            self.finish_run(OpenRun(run, entry["run_id"], [], int(entry.get("last_step", 0))),
                            final["status"], final.get("reason", ""))
            entry["state"] = final["status"]

    def write_summary_run(self) -> None:
        """The data set and best model (wandb.artifacts), and a multi-objective sweep's front."""
        # Its own run, not tied to the sweep: W&B's sweep views then hold trials only.
        config = {"experiment": self.plan["experiment"]}
        objectives = self.plan.get("objectives")  # absent from a plan pickled before they were
        if objectives:
            config["objectives"] = [{metric: mode} for metric, mode in objectives]
        if self.sweep_id:  # online: which W&B sweep it summarises (the run itself joins none)
            config["sweep_id"] = self.sweep_id
        # Where the sweep was extended and what warm-started it (sweep/wandb_mirror/history.py)
        history = sweep_history(self.root)
        if "warm_start" in history:
            config["warm_start"] = history["warm_start"]
        run = self.init_run(self.plan["summary_run_id"], f"{self.plan['experiment']}-summary",
                            config, job_type="sweep-summary")
        run.summary.update(history)
        if self.plan.get("artifacts"):
            run.log_artifact(self.dataset_artifact())
            if self.model and Path(self.model["path"]).is_file():
                run.log_artifact(self.model_artifact(self.model), aliases=["best", "latest"])
                run.summary.update({f"best/{k}": v for k, v in self.model["metrics"].items()})
        if objectives and (front := front_rows(self.root)):
            self.log_front(run, objectives, *front)
        self.status["summary_run"] = {"run_id": run.id, "dir": self.relative(run)}
        run.finish()

    def log_front(self, run, objectives: list, columns: list[str], rows: list[list]) -> None:
        """pareto.csv as the `pareto_front` table, and W&B's scatter of the primary objective
        against the first cost over it (the report's figure adds the dominated trials)."""
        (primary, _), (cost, _) = objectives[0], objectives[1]
        # Mixed: a seeds' range is empty (None) where a trial lacks a seed's value.
        table = self.wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
        plot = self.wandb.plot.scatter(table, x=cost, y=primary,
                                       title=f"Pareto front: {primary} against {cost}")
        run.log({"pareto_front": table, "pareto_front_plot": plot})
        run.summary.update({"pareto/front_trials": len(rows),
                            "pareto/default_pick": rows[0][columns.index("number")] if rows
                            else None})

    def dataset_artifact(self):
        data = self.plan["dataset"]
        path = rundir.write_json(self.root / rundir.DATASET_FILE, data)
        kind = data.get("source", {}).get("kind", "data")
        artifact = self.wandb.Artifact(f"{self.plan['experiment']}-{kind}-data", type="dataset",
                                       description="how the data set was made, and its hash",
                                       metadata=data)
        artifact.add_file(str(path), name=path.name, policy="immutable")
        return artifact

    def model_artifact(self, model: dict):
        metadata = {"config": model["config"], "metric": self.plan["metric"],
                    "metrics": model["metrics"], "trial_id": model.get("trial_id"),
                    "group": self.plan["experiment"],
                    "data_fingerprint": self.plan["dataset"].get("fingerprint")}
        if self.sweep_id:
            metadata["sweep_id"] = self.sweep_id
        artifact = self.wandb.Artifact(
            f"{self.plan['experiment']}-model", type="model",
            description="the sweep's best checkpoint (this project's format, predict-ready)",
            metadata=metadata)
        artifact.add_file(model["path"], name=Path(model["path"]).name, policy="immutable")
        return artifact

    # ---- helpers --------------------------------------------------------------------------
    def init_run(self, run_id: str, name: str, config: dict, job_type: str,
                 sweep_id: str | None = None):
        try:
            return self.init_run_once(run_id, name, config, job_type, sweep_id)
        except Exception as error:
            if self.mode != "online":
                raise
            self.fall_back_offline("starting an online run", error)
            return self.init_run_once(run_id, name, config, job_type, None)

    def init_run_once(self, run_id: str, name: str, config: dict, job_type: str,
                      sweep_id: str | None):
        wandb = self.wandb
        settings = wandb.Settings(
            sweep_id=sweep_id, silent=True, console="off", x_disable_stats=True,
            x_disable_machine_info=True, disable_git=True, save_code=False,
            disable_job_creation=True)
        return wandb.init(
            project=self.plan["project"], entity=self.plan["entity"], group=self.plan["experiment"],
            job_type=job_type, id=run_id, name=name, config=config, mode=self.mode,
            dir=str(self.root), reinit="create_new", settings=settings)

    def guarded(self, doing: str, function, *args) -> None:
        try:
            function(*args)
        except Exception as error:
            if not self.broken:
                self.fail(doing, error)

    def relative(self, run) -> str:
        return os.path.relpath(run.settings.sync_dir, self.root)

    def save_status(self) -> None:
        try:
            rundir.write_json(self.root / rundir.MIRROR_FILE, self.status)
        except (OSError, DiskFullError):
            pass  # a full disk already showed up as a W&B failure; the sweep goes on


def earlier_status(root: Path) -> dict:
    try:
        status = json.loads((root / rundir.MIRROR_FILE).read_text())
        # local_sweep_id: runs of an earlier mirror version carry it (sync refuses those).
        return {key: status[key] for key in ("runs", "synced", "online_sweep_id",
                                             "local_sweep_id") if key in status}
    except (OSError, ValueError):
        return {}


_reported: list[str] = []


def print_once(message: str) -> None:
    if not _reported:
        _reported.append(message)
        print(message, file=sys.stderr, flush=True)


def scrub(text: str) -> str:
    """Never echo an API key, whatever an error message holds."""
    key = os.environ.get("WANDB_API_KEY")
    return text.replace(key, "***") if key else text


def described(error: BaseException) -> str:
    """'TypeName: message' on one line, an API key scrubbed out before the cut (so a key at
    the edge cannot leak half of itself)."""
    return scrub(error_line(error, limit=None))[:200]


def main() -> int:
    """The logging process: JSON lines on stdin until EOF (the driver closed it or died)."""
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the driver; we drain and exit
    writer = None
    for line in sys.stdin:
        record = json.loads(line)
        if record["kind"] == "plan":
            writer = MirrorWriter(record["plan"])
        elif writer is not None:
            writer.handle(record)
    if writer is not None:
        writer.close(interrupted=not writer.closed)
        if writer.wandb is not None:
            writer.wandb.teardown()  # wandb-core exits (and is counted) before we measure
        writer.status["writer_cpu_s"] = cpu_seconds()  # what mirroring cost this sweep
        writer.save_status()
    return 0


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (wandb-core), user + system."""
    own, children = (resource.getrusage(who)
                     for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 3)


if __name__ == "__main__":
    sys.exit(main())
