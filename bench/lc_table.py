"""Learning-curve tables of our problems (issues 14 and 21): every configuration of a grid
trained with the real loop (``training.loop.train``) for ``max_epochs`` epochs with 4 seeds,
every epoch's val_dice, val_loss and wall time recorded. Search methods are then compared by
replaying many searches against the tables in seconds (bench/lc_replay.py), the way LCBench,
HPOBench and YAHPO Gym compare them.

    python -m bench.lc_table --problem unet_thin    # bench/lc_tables/unet_thin.json.gz, ~1 h
    python -m bench.lc_table --problem tiny         # 6 configs x 4 seeds x 6 epochs, seconds
    python -m bench.lc_table --problem unet_crop --budget-s 600
                                # stop starting runs after 10 min (run it again later:
                                # finished runs are kept and skipped)

Resumable: each finished (configuration, seed) run is appended to a progress file as one JSON
line the moment it ends; a restart skips those. The table file (gzip JSON) is rewritten from the
progress file at the end, with the generator's settings, the code version and the machine.

Each problem's folder is written by bench/data_folder.py from data_pipeline/synthetic.py's
cracks (untouched: caches and seeds depend on it), at the size and scale the problem names.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import logging
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.child import REPO_ROOT

log = logging.getLogger(__name__)

FORMAT = 1

# ---- the problems of the held-out search benchmark (issue 21) ----------------------------------
# Every problem has the same grid, one a model can exploit: lr at 12 log-even points over 4
# decades, weight_decay at 4 over 4 decades, and four two-way choices (768 configurations), each
# trained with 4 seeds for 6 epochs (quickstart's max_epochs, so ASHA's rungs are quickstart's
# 1, 2, 4). A search sees only SEEN_SEEDS; HELDOUT_SEEDS score what it returns.
SEEN_SEEDS = (0, 1)
HELDOUT_SEEDS = (2, 3)
PROBLEM_GRID = {
    "lr": [1e-05, 2.31e-05, 5.34e-05, 0.000123, 0.000285, 0.000658, 0.00152, 0.00351, 0.0081,
           0.0187, 0.0433, 0.1],
    "weight_decay": [1e-05, 0.000215, 0.00464, 0.1],
    "optimizer": ["rmsprop", "adamw"],
    "batch_size": [4, 16],
    "width": [4, 8],
    "scheduler": ["plateau", "cosine"],
}
_PROBLEM_TRAIN = {"scale": 0.5, "val_percent": 20.0, "device": "cpu", "threads": 1,
                  "augment": True, "grad_clip": 1.0, "eval_batch_size": 16,
                  "keep_checkpoints": 1}
PROBLEMS = {
    # Thin, faint cracks: 96 px drawn, read at half scale (the problem of the first table).
    "unet_thin": {"train": {**_PROBLEM_TRAIN, "model": "unet"},
                  "folder": {"images": 48, "size": 96}},
    # A folder of mixed sizes (96-160 px drawn, read at half scale), trained on random 40 px
    # crops, validated on whole images: the `crop` path a user's own photos take.
    "unet_crop": {"train": {**_PROBLEM_TRAIN, "model": "unet", "crop": 40},
                  "folder": {"images": 48, "size": 96, "max_size": 160}},
    # Crisp cracks: 48 px drawn and read at full scale. (SegNet was tried here first: in 6
    # epochs on 38 images it learned nothing at any of 6 settings tried, lr 1e-4 to 3e-2, so
    # its table would be all zeros.)
    "unet_crisp": {"train": {**_PROBLEM_TRAIN, "model": "unet", "scale": 1.0},
                   "folder": {"images": 48, "size": 48}},
}
TINY_PROBLEM = {"train": {**_PROBLEM_TRAIN, "model": "unet"}, "folder": {"images": 16, "size": 64},
                "grid": {"lr": [1e-4, 1e-3, 1e-2], "optimizer": ["rmsprop", "adamw"],
                         "batch_size": [8], "weight_decay": [1e-8], "width": [4],
                         "scheduler": ["cosine"]},
                "max_epochs": 3}


def problem_settings(name: str) -> dict:
    """A problem's generator settings (a deep copy): 4 seeds, 6 epochs, the shared grid."""
    problem = TINY_PROBLEM if name == "tiny" else PROBLEMS[name]
    settings = {"problem": name, "seeds": [*SEEN_SEEDS, *HELDOUT_SEEDS], "max_epochs": 6,
                "grid": PROBLEM_GRID, **problem}
    return json.loads(json.dumps(settings))


def problem_table_file(name: str) -> Path:
    if name == "tiny":
        return REPO_ROOT / "bench" / "out" / "tiny" / "lc_tables" / "tiny.json.gz"
    return REPO_ROOT / "bench" / "lc_tables" / f"{name}.json.gz"


def grid_configs(grid: dict) -> list[dict]:
    """Every combination of the grid, in a fixed order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def config_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def run_key(params: dict, seed: int) -> str:
    return f"{config_key(params)}|{seed}"


def jobs(settings: dict) -> list[tuple[dict, int]]:
    """(params, seed) runs in a shuffled but fixed order, seeds of a configuration adjacent:
    a table cut short by the budget is a random subset of whole configurations."""
    configs = grid_configs(settings["grid"])
    random.Random(0).shuffle(configs)
    return [(params, seed) for params in configs for seed in settings["seeds"]]


# ---- the data set -----------------------------------------------------------------------------
def data_folder(work_dir: Path, settings: dict) -> Path:
    from bench.data_folder import write_crack_folder

    spec = settings["folder"]
    folder = work_dir / f"data_{spec['images']}x{spec['size']}"
    done = folder / "complete"
    if spec.get("max_size"):
        folder = folder.with_name(f"{folder.name}-{spec['max_size']}")
        done = folder / "complete"
    if not done.exists():
        write_crack_folder(folder, spec["images"], spec["size"], max_size=spec.get("max_size"))
        done.write_text("")
    return folder


def base_train(settings: dict, folder: Path, cache_dir: Path) -> dict:
    return {**settings["train"], "data_dir": str(folder), "cache_dir": str(cache_dir),
            "epochs": settings["max_epochs"]}


# ---- one run (in a worker process) -------------------------------------------------------------
_DATA = None


def _load_worker_data(base: dict) -> None:
    global _DATA
    from training.config import TrainConfig

    _DATA = TrainConfig.from_dict(base, "lc_table").load_data()


def train_run(base: dict, params: dict, seed: int) -> dict:
    """Train one configuration with one seed; its curve as lists over epochs 1..max_epochs."""
    from training.config import TrainConfig
    from training.loop import train

    with tempfile.TemporaryDirectory(prefix="lc-") as out_dir:
        config = TrainConfig.from_dict({**base, **params, "seed": seed, "out_dir": out_dir},
                                       "lc_table run")
        began = time.perf_counter()
        result = train(config, _DATA)
        total = time.perf_counter() - began
    history = result.history
    return {"params": params, "seed": seed, "total_s": round(total, 3),
            "val_dice": [round(m["val_dice"], 6) for m in history],
            "val_loss": [round(m["val_loss"], 6) for m in history],
            "train_loss": [round(m["train_loss"], 6) for m in history],
            "epoch_s": [round(m["epoch_seconds"], 4) for m in history]}


def _worker_run(job: tuple[dict, int]) -> dict:
    base, params, seed = job
    return train_run(base, params, seed)


# ---- the resumable generator -------------------------------------------------------------------
def read_progress(path: Path, header: dict) -> dict[str, dict]:
    """Finished runs by run key. A progress file of other settings is refused, never mixed."""
    if not path.exists():
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("header") != header:
        from bench.child import BenchError

        raise BenchError(f"{path} was written with other generator settings; delete it (or "
                         f"pass --fresh) to start over")
    return {run_key(r["params"], r["seed"]): r for r in lines[1:] if "params" in r}


def seed_progress(progress: Path, header: dict, table_path: Path) -> None:
    """A committed (partial) table of the same settings starts the progress file: a fresh
    clone resumes a table another machine began, retraining nothing it holds."""
    table = load_table(table_path)
    if {"format": table["format"], "settings": table["settings"]} != header:
        return  # other settings: read_progress refuses nothing, the generator starts over
    progress.parent.mkdir(parents=True, exist_ok=True)
    append_line(progress, {"header": header})
    for config in table["configs"]:
        for run in config["runs"]:
            append_line(progress, {"params": config["params"], **run})


def append_line(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def generate(settings: dict, work_dir: Path, table_path: Path, processes: int = 2,
             budget_s: float = 0.0, fresh: bool = False) -> dict:
    """Train every run not in the progress file yet (``processes`` at a time), appending each as
    it ends; stop starting new ones after ``budget_s`` (0: no limit). Writes the table file from
    every finished run and returns its summary."""
    work_dir.mkdir(parents=True, exist_ok=True)
    progress = work_dir / "progress.jsonl"
    if fresh:
        progress.unlink(missing_ok=True)
    header = {"format": FORMAT, "settings": settings}
    if not progress.exists() and table_path.exists():
        seed_progress(progress, header, table_path)
    done = read_progress(progress, header)
    if not progress.exists():
        append_line(progress, {"header": header})
    todo = [(p, s) for p, s in jobs(settings) if run_key(p, s) not in done]
    log.info("lc_table: %d runs finished earlier, %d to go", len(done), len(todo))
    folder = data_folder(work_dir, settings)
    base = base_train(settings, folder, work_dir / "cache")
    _load_worker_data(base)  # builds the decoded cache once, before the workers fork
    began = time.perf_counter()
    ran = run_pool(base, todo, processes, budget_s, began,
                   lambda row: (append_line(progress, row), done.__setitem__(
                       run_key(row["params"], row["seed"]), row)))
    summary = write_table(table_path, settings, list(done.values()), processes,
                          time.perf_counter() - began)
    log.info("lc_table: %d runs this time in %.0f s; %s holds %d of %d runs", ran,
             time.perf_counter() - began, table_path, len(done), len(jobs(settings)))
    return summary


def run_pool(base: dict, todo: list, processes: int, budget_s: float, began: float,
             on_done) -> int:
    """At most ``processes`` runs in flight; a new one starts only inside the budget."""
    if not todo:
        return 0
    context = multiprocessing.get_context("fork")  # workers inherit the mapped data set
    ran = 0
    with context.Pool(processes, maxtasksperchild=None) as pool:
        pending, queue = [], list(todo)
        while queue or pending:
            while queue and len(pending) < processes and not over(budget_s, began):
                params, seed = queue.pop(0)
                pending.append(pool.apply_async(_worker_run, ((base, params, seed),)))
            if over(budget_s, began):
                queue = []
            for result in [r for r in pending if r.ready()]:
                pending.remove(result)
                on_done(result.get())
                ran += 1
            time.sleep(0.05)
    return ran


def over(budget_s: float, began: float) -> bool:
    return budget_s > 0 and time.perf_counter() - began > budget_s


# ---- the table file ----------------------------------------------------------------------------
def code_version() -> str:
    """The commit the table was made with (+dirty when the worktree had changes)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def write_table(path: Path, settings: dict, rows: list[dict], processes: int,
                seconds: float) -> dict:
    """Configurations in grid order, each with its runs sorted by seed."""
    from bench.machine import machine_info

    by_config: dict[str, list] = {}
    for row in rows:
        by_config.setdefault(config_key(row["params"]), []).append(row)
    configs = []
    for params in grid_configs(settings["grid"]):
        runs = sorted(by_config.get(config_key(params), []), key=lambda r: r["seed"])
        if runs:
            configs.append({"params": params,
                            "runs": [{k: v for k, v in r.items() if k != "params"}
                                     for r in runs]})
    table = {"format": FORMAT, "settings": settings, "code_version": code_version(),
             "machine": machine_info(), "processes": processes,
             "complete": len(rows) == len(jobs(settings)),
             "runs": len(rows), "last_session_s": round(seconds, 1), "configs": configs}
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    with gzip.open(scratch, "wt") as handle:
        json.dump(table, handle, separators=(",", ":"))
    scratch.replace(path)
    return {"path": str(path), "runs": len(rows), "configs": len(configs),
            "complete": table["complete"]}


def load_table(path: Path) -> dict:
    with gzip.open(path, "rt") as handle:
        return json.load(handle)


# ---- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lc_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", choices=[*PROBLEMS, "tiny"], required=True,
                        help="the problem (4 seeds, 768 configurations, ~1 h on 2 cores each; "
                             "tiny: seconds)")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="start no run after this many seconds (0: no limit)")
    parser.add_argument("--processes", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--out", type=Path, help="table file (default: "
                                                 "bench/lc_tables/PROBLEM.json.gz)")
    parser.add_argument("--work-dir", type=Path, help="progress file, data folder and cache "
                                                      "(default: bench/out/lc_table_PROBLEM)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("training.loop", "data_pipeline"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings = problem_settings(args.problem)
    out = args.out or problem_table_file(args.problem)
    work = args.work_dir or REPO_ROOT / "bench" / "out" / f"lc_table_{args.problem}"
    summary = generate(settings, work, out, args.processes, args.budget_s, args.fresh)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
