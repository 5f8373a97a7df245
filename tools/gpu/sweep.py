"""One budgeted call on a lent GPU machine (issue 10): a real Ray + Optuna + W&B sweep on the
card, its FLOP utilisation, and trials sharing it. Started by tools/gpu/sweep.sh, which unpacks
the carried packages first (tools/gpu/carry.py builds them).

Phases, in priority order (each a child process with its own time limit; a phase that no
longer fits the budget is skipped and the result says so, so a tight budget costs figures,
not the result):
  mfu_eager    MFU of one full-width training step (UNet 64, 256 px), determinism on and off,
               batch 16 and 64 (bench/gpu_mfu.py)
  sweep        a shortened crack_unet sweep: 8 trials, 4 at a time at gpus 0.25, one trial with
               an out-of-memory-sized batch (a real CUDA OOM: infeasible, the others go on)
  share        1, 4 and 2 small trials (UNet 16, 128 px) sharing one GPU through the real
               sweep: aggregate samples/s
  mfu_compile  the same step under torch.compile, determinism on and off, batch 64 and 128
  mfu_loop     the real loop (training.loop.train), eager and compiled
  quickstart   experiments/quickstart.yaml on the GPU (compare with its CPU time)

    python -m tools.gpu.sweep --out OUT --budget-s 420
    python -m tools.gpu.sweep --out OUT --tiny --device cpu   # the code path, on CPU
Writes OUT/gpu_sweep.json, OUT/gpu_sweep.md and the sweep's report (sweep_report.html/.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OOM_BATCH = 1024  # ~200 MB per 256-px image at width 64: ~200 GB, more than any one card
PHASES = [  # name, seconds it needs at least to start, seconds it may take at most
    ("mfu_eager", 45, 90),
    ("sweep", 120, 210),
    ("share", 60, 150),
    ("mfu_compile", 60, 150),
    ("mfu_loop", 45, 100),
    ("quickstart", 90, 180),
]
TINY_LIMITS = {name: (5, 600) for name, _, _ in PHASES}
RESERVE_S = 10  # kept back for writing the result


# ---- the sweep with an out-of-memory trial -------------------------------------------------
def oom_experiment(tiny: bool, device: str, seed: int):
    from sweep.experiment import Experiment
    from training.settings import load_yaml

    base = load_yaml(ROOT / "experiments" / "crack_unet.yaml")
    train = {**base["train"], "num_workers": 2, "synthetic_images": 1200}
    oom = OOM_BATCH
    if tiny:
        train.update(width=4, synthetic_size=32, synthetic_images=24, device=device,
                     num_workers=0, eval_batch_size=4)
        oom = 16  # no real OOM on a CPU: the fault hook below raises torch's error instead
    values = {
        "name": "gpu_oom_sweep", "description": "issue 10: crack_unet shortened, one OOM batch",
        "train": train,
        "space": {"lr": {"loguniform": [1.0e-4, 1.0e-3]},
                  "batch_size": {"choice": [2 if tiny else 8, 4 if tiny else 16, oom]},
                  "optimizer": {"choice": ["rmsprop", "adamw"]}},
        "search": {"trials": 4 if tiny else 8, "concurrency": 2 if tiny else 4, "seed": seed,
                   "startup_trials": 4 if tiny else 8},
        "scheduler": {"max_epochs": 2 if tiny else 3, "grace_period": 1,
                      "reduction_factor": 2},
        "resources": {"cpus": 1, "gpus": 0 if tiny else 0.25},
        "wandb": {},
    }
    return Experiment.from_dict(values, "tools/gpu/sweep.py"), oom


def choose_search_seed(experiment_for, oom: int) -> tuple[int, list]:
    """A TPE seed whose random start-up draws the OOM batch exactly once, and not in the first
    wave (so it runs beside warm trials). The draws depend on the seed and the order of asks
    only, so Optuna can predict them here; the result records the prediction beside what ran."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in range(1000):
        experiment = experiment_for(seed)
        search = experiment.search
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        space = experiment.distributions()
        draws = [study.ask(space).params["batch_size"] for _ in range(search.trials)]
        where = [i for i, batch in enumerate(draws) if batch == oom]
        if len(where) == 1 and where[0] >= search.concurrency:
            return seed, draws
    raise RuntimeError("no search seed puts the OOM batch in one later trial")


def sweep_phase(work: Path, tiny: bool, device: str) -> dict:
    from sweep.runner import run_experiment

    oom = oom_experiment(tiny, device, 0)[1]
    seed, predicted = choose_search_seed(lambda s: oom_experiment(tiny, device, s)[0], oom)
    experiment, _ = oom_experiment(tiny, device, seed)
    if tiny:  # no real OOM on a CPU: the tests' fault hook makes that batch's allocation fail
        from sweep.faults import ENV_VAR

        os.environ[ENV_VAR] = json.dumps({"oom_when": {"batch_size": oom}, "oom_epoch": 1})
    summary = run_experiment(experiment, work / "runs", fresh=True)
    result = describe_sweep(summary.run_dir, experiment)
    result.update(search_seed=seed, predicted_batch_sizes=predicted, oom_batch=oom,
                  wall_s=summary.wall_s, counts=summary.counts,
                  best_val_dice=summary.best_val_dice,
                  report=str(summary.report) if summary.report else None,
                  run_dir=str(summary.run_dir), injected_oom=tiny)
    return result


def describe_sweep(run_dir: Path, experiment) -> dict:
    """Each trial: params, status (trial_status.json), Optuna's state, speed and its GPU."""
    from sweep.report import stats
    from sweep.report.load import load_run
    from sweep.rundir import WANDB_DIR, journal_storage, read_statuses, read_trials, storage_of

    statuses = read_statuses(run_dir)
    import optuna

    study = optuna.load_study(study_name=experiment.name, storage=journal_storage(run_dir))
    states = {t.user_attrs.get("ray_trial_id"): t.state.name for t in study.get_trials()}
    trials = []
    for record in read_trials(storage_of(run_dir)):
        rows = [r for r in record.rows if "samples_per_s" in r]
        entry = statuses.get(record.trial_id, {})
        trials.append({
            "trial": record.trial_id, "params": record.params,
            "status": entry.get("status"), "reason": entry.get("reason", ""),
            "optuna": states.get(record.trial_id), "epochs": len(rows),
            "samples_per_s": statistics.mean(r["samples_per_s"] for r in rows) if rows else None,
            "gpu_ids": rows[-1].get("gpu_ids") if rows else None,
            "gpu_peak_mem_mb": max((r["gpu_peak_mem_mb"] for r in rows
                                    if r.get("gpu_peak_mem_mb") is not None), default=None)})
    _, per_gpu = stats.gpu_throughput(load_run(run_dir))
    wandb_runs = sorted(p.name for p in (run_dir / WANDB_DIR).glob("offline-run-*"))
    return {"trials": trials, "per_gpu": per_gpu.to_dict("records"),
            "wandb_offline_runs": len(wandb_runs)}


# ---- trials sharing one GPU -------------------------------------------------------------------
def share_experiment(count: int, tiny: bool, device: str):
    from sweep.experiment import Experiment

    train = {"model": "unet", "width": 16, "synthetic_images": 800, "synthetic_size": 128,
             "batch_size": 8, "eval_batch_size": 16, "num_workers": 2, "device": device,
             "amp": True, "scheduler": "cosine"}
    if tiny:
        train.update(width=4, synthetic_images=24, synthetic_size=32, num_workers=0)
    epochs = 2 if tiny else 5
    return Experiment.from_dict({
        "name": f"gpu_share_{count}", "train": train,
        "space": {"lr": {"choice": [1.0e-3]}},  # one configuration: only the sharing changes
        "search": {"trials": count, "concurrency": count, "startup_trials": 1},
        "scheduler": {"max_epochs": epochs, "grace_period": epochs},  # no early stopping
        "resources": {"cpus": 1, "gpus": 0 if tiny else 0.25},
        "wandb": {"enabled": False}}, "tools/gpu/sweep.py")


def share_phase(work: Path, tiny: bool, device: str, budget_s: float) -> dict:
    import ray

    from sweep.report import stats
    from sweep.report.load import load_run
    from sweep.rundir import read_trials, storage_of
    from sweep.runner import run_experiment

    ray.init(address="local", include_dashboard=False, log_to_driver=False)  # one for all
    start, longest, results, skipped = time.time(), 0.0, {}, []
    try:
        for count in (1, 4, 2):  # 1 and 4 first: the goal compares them
            left = budget_s - (time.time() - start)
            if left < longest * 1.3:
                skipped.append(f"{count} at once: {left:.0f} s left")
                continue
            began = time.time()
            summary = run_experiment(share_experiment(count, tiny, device), work / "runs",
                                     fresh=True)
            longest = max(longest, time.time() - began)
            records = read_trials(storage_of(summary.run_dir))
            # Steady speed: epochs 2.. (the first holds worker start, CUDA and cuDNN warm-up).
            steady = [statistics.median([r["samples_per_s"] for r in rec.rows
                                         if "samples_per_s" in r][1:] or [0.0])
                      for rec in records]
            samples = sum(r.get("train_samples", 0) for rec in records for r in rec.rows)
            _, per_gpu = stats.gpu_throughput(load_run(summary.run_dir))
            results[count] = {
                "trials": len(records), "per_trial_samples_per_s": steady,
                "aggregate_samples_per_s": sum(steady),
                "end_to_end_samples_per_s": samples / summary.wall_s,
                "sweep_wall_s": summary.wall_s, "per_gpu": per_gpu.to_dict("records"),
                "gpu_ids": sorted({str(r.get("gpu_ids")) for rec in records for r in rec.rows})}
    finally:
        ray.shutdown()
    ratios = {f"{c} vs 1": results[c]["aggregate_samples_per_s"]
              / results[1]["aggregate_samples_per_s"]
              for c in results if c != 1 and 1 in results
              and results[1]["aggregate_samples_per_s"] > 0}
    return {"counts": results, "ratios": ratios, "skipped": skipped, "goal_4_vs_1": 2.5}


# ---- the quickstart sweep on the GPU ---------------------------------------------------------
def quickstart_phase(work: Path, tiny: bool, device: str) -> dict:
    from sweep.experiment import load_experiment
    from sweep.runner import run_experiment

    overrides = [f"--train.device={device}", "--resources.gpus=" + ("0" if tiny else "0.5")]
    if tiny:
        overrides += ["--search.trials=2", "--scheduler.max_epochs=1", "--scheduler.grace_period=1",
                      "--train.synthetic_images=16", "--train.synthetic_size=32",
                      "--train.width=4"]
    experiment = load_experiment(ROOT / "experiments" / "quickstart.yaml", overrides)
    summary = run_experiment(experiment, work / "runs", fresh=True)
    return {"wall_s": summary.wall_s, "counts": summary.counts,
            "best_val_dice": summary.best_val_dice, "overrides": overrides}


# ---- the budgeted driver ----------------------------------------------------------------------
def phase_command(name: str, work: Path, tiny: bool, device: str, limit: float) -> list[str]:
    python = [sys.executable, "-m"]
    if name.startswith("mfu_"):
        command = python + ["bench.gpu_mfu", "--out", str(work / f"{name}.json"), "--device",
                            device, "--budget-s", str(max(limit - 15, 5)), "--only",
                            name.removeprefix("mfu_")]
        return command + (["--tiny"] if tiny else [])
    command = python + ["tools.gpu.sweep", "--phase", name, "--work", str(work), "--device",
                        device, "--budget-s", str(max(limit - 20, 5))]
    return command + (["--tiny"] if tiny else [])


def run_phase(command: list[str], limit: float, log) -> tuple[int | None, float]:
    """The phase in its own process group: at its limit the whole group goes (Ray's raylet
    and workers too, so no process keeps GPU memory for the next phase)."""
    began = time.time()
    child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        return child.wait(timeout=limit), time.time() - began
    except subprocess.TimeoutExpired:
        return None, time.time() - began
    finally:
        kill_group(child.pid)  # also after a clean exit: nothing of the phase may linger


def kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def drive(out: Path, budget_s: float, tiny: bool, device: str, phases: list[str]) -> dict:
    start = time.time()
    work = Path(tempfile.mkdtemp(prefix="gpu_sweep-"))
    result = {"budget_s": budget_s, "phases": {}, "skipped": {}, "machine": machine()}
    limits = TINY_LIMITS if tiny else {name: (low, high) for name, low, high in PHASES}
    with (out / "gpu_sweep.log").open("a") as log:
        for name in phases:
            low, high = limits[name]
            left = budget_s - (time.time() - start) - RESERVE_S
            if left < low:
                result["skipped"][name] = f"{left:.0f} s left, needs {low} s"
                continue
            limit = min(high, left)
            log.write(f"\n==== {name} (limit {limit:.0f} s)\n")
            log.flush()
            code, seconds = run_phase(phase_command(name, work, tiny, device, limit), limit, log)
            figures = read_json(work / f"{name}.json")
            figures.update(exit_code=code, seconds=round(seconds, 1),
                           timed_out=code is None)
            result["phases"][name] = figures
            write_result(out, result)  # what is done so far survives a kill of the driver
    result["wall_s"] = time.time() - start
    copy_sweep_report(result, out)
    write_result(out, result)
    return result


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"error": f"no result file ({path.name}): see gpu_sweep.log"}


def copy_sweep_report(result: dict, out: Path) -> None:
    run_dir = result["phases"].get("sweep", {}).get("run_dir")
    if not run_dir:
        return
    from sweep.rundir import REPORT_HTML, REPORT_MD, STATUS_FILE  # light: no ray

    for name, target in ((REPORT_HTML, "sweep_report.html"), (REPORT_MD, "sweep_report.md"),
                         (STATUS_FILE, STATUS_FILE)):
        source = Path(run_dir) / name
        if source.exists() and source.stat().st_size < 15 * 2**20:
            shutil.copyfile(source, out / target)


def machine() -> dict:
    from bench.machine import machine_info

    return machine_info()


def write_result(out: Path, result: dict) -> None:
    from tools.gpu.sweep_md import markdown

    (out / "gpu_sweep.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "gpu_sweep.md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu.sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="result folder ($OUT on the GPU machine)")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: the code path")
    parser.add_argument("--phases", default=",".join(name for name, _, _ in PHASES))
    parser.add_argument("--phase", help=argparse.SUPPRESS)  # a child: run one phase
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.phase:
        work = args.work
        if args.phase == "sweep":
            figures = sweep_phase(work, args.tiny, args.device)
        elif args.phase == "share":
            figures = share_phase(work, args.tiny, args.device, args.budget_s)
        else:
            figures = quickstart_phase(work, args.tiny, args.device)
        (work / f"{args.phase}.json").write_text(json.dumps(figures, indent=1, default=str))
        return 0
    if not args.out:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    result = drive(args.out, args.budget_s, args.tiny, args.device, args.phases.split(","))
    print((args.out / "gpu_sweep.md").read_text())
    return 0 if result["phases"] else 1


if __name__ == "__main__":
    sys.exit(main())
