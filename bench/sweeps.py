"""The sweep benchmarks: `overhead`, `memory`, `wandb` and `modes` (and `search-live`'s sweeps),
all through the product's own runner (``sweep.runner.run_experiment``): the synthetic crack set,
and for `memory` generated crack folders of a real data set's image size, read through the
decoded disk cache.

Full mode runs every sweep in a fresh child process with its own Ray (``ray.init`` timed apart);
tiny mode runs them in this process, joining a Ray session already up (the test suite's).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.child import REPO_ROOT, BenchError, run_in_child, start_child
from bench.data_folder import image_bytes, write_crack_folder
from bench.measure import interleave, median, ratio, spread
from bench.memory_probe import PeakSampler, check_supported, sample_until_exit, wait_and_sample
from bench.registry import Context, Outcome
from bench.sweep_sides import experiment_values, run_plain, run_sweep, trial_config_file
from sweep.rundir import RESULT_FILE, WANDB_DIR

# One configuration: every trial trains the same (lr 1e-3 is TrainConfig's default).
FIXED_SPACE = {"lr": {"choice": [1e-3]}}
SWEEP_TIMEOUT = 1800


def train_settings(s: dict) -> dict:
    return {"model": "unet", "width": s["width"], "synthetic_images": s["images"],
            "synthetic_size": s["size"], "device": "cpu", "batch_size": s["batch"]}


def fixed_sweep(name: str, s: dict, wandb: dict | None = None, **changes) -> dict:
    """N trials of one config, no early stopping (grace period = every epoch)."""
    settings = dict(trials=s["trials"], concurrency=s["concurrency"], max_epochs=s["epochs"],
                    grace_period=s["epochs"], cpus=s.get("cpus", 1.0), wandb=wandb)
    return experiment_values(name, train_settings(s), FIXED_SPACE, **{**settings, **changes})


def sweep_side(ctx: Context, values: dict, tag: str, env: dict | None = None) -> dict:
    runs_dir = ctx.work_dir / "runs" / tag
    if ctx.tiny:
        return run_sweep(values, str(runs_dir))
    return run_in_child("bench.sweep_sides:run_sweep",
                        {"values": values, "runs_dir": str(runs_dir),
                         "num_cpus": os.cpu_count()}, ctx.work_dir, tag, SWEEP_TIMEOUT, env)


# ---- overhead -------------------------------------------------------------------------------
# Every timing at least 3 repeats in one run (issue 22): a spread of 2 says nothing of noise.
OVERHEAD = {"full": dict(images=160, size=128, width=8, batch=4, epochs=4, trials=8,
                         concurrency=2, repeats=3),
            "tiny": dict(images=16, size=32, width=4, batch=4, epochs=1, trials=2,
                         concurrency=2, repeats=1)}
OVERHEAD_GOAL = 1.10


def run_overhead(ctx: Context) -> Outcome:
    s = OVERHEAD["tiny" if ctx.tiny else "full"]
    values = fixed_sweep("overhead", s)

    def sweep(repeat: int) -> dict:
        return sweep_side(ctx, values, f"sweep{repeat}")

    def plain(repeat: int) -> dict:
        folder = ctx.work_dir / f"plain{repeat}"
        configs = [trial_config_file(values, {"seed": 0}, folder / f"trial{i}")
                   for i in range(s["trials"])]
        return {"wall_s": run_plain(configs, s["concurrency"], folder / "logs")}

    runs = interleave({"sweep": sweep, "plain": plain}, ctx.repeats or s["repeats"])
    sweep_s = [r["sweep_s"] for r in runs["sweep"]]
    with_init = [r["sweep_s"] + r["ray_init_s"] for r in runs["sweep"]]
    plain_s = [r["wall_s"] for r in runs["plain"]]
    value = ratio(median(sweep_s), median(plain_s))
    value_init = ratio(median(with_init), median(plain_s))
    return Outcome(
        ratio=value, met=value <= OVERHEAD_GOAL,
        headline=f"{value:.2f} ({median(sweep_s):.1f} s sweep vs {median(plain_s):.1f} s plain; "
                 f"{value_init:.2f} with ray.init)",
        figures={"sweep_s": spread(sweep_s), "sweep_with_ray_init_s": spread(with_init),
                 "plain_s": spread(plain_s), "ratio_with_ray_init": value_init,
                 "setup": s, "runs": runs},
        notes=[f"{s['trials']} trials x {s['epochs']} epochs of one config (UNet width "
               f"{s['width']}, {s['images']} images {s['size']} px), {s['concurrency']} at a "
               f"time, no early stopping, W&B off; plain = `python -m sweep train` processes "
               f"at the same concurrency; median of {len(sweep_s)} alternating runs; ray.init "
               f"(once per session) is left out of the headline and shown beside it"])


# ---- search-live (bench/lc_live.py) reads sweeps' epochs with these two -----------------
def epoch_timeline(tune_dir: Path) -> list[dict]:
    """Every reported epoch of every trial, in the order they ended. Ray stamps rows with whole
    seconds, so a trial's start is estimated as the latest (timestamp - time_total_s) of its
    rows (error under 1 s) and each epoch's end as start + time_total_s."""
    rows = []
    for result in Path(tune_dir).glob(f"*/{RESULT_FILE}"):
        trial = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        trial = [r for r in trial if "val_dice" in r and "time_total_s" in r]
        if not trial:
            continue
        start = max(r["timestamp"] - r["time_total_s"] for r in trial)
        rows += [{"trial": result.parent.name, "epoch": r["epoch"], "val_dice": r["val_dice"],
                  "start": start, "end": start + r["time_total_s"]} for r in trial]
    if not rows:
        raise BenchError(f"{tune_dir}: no trial reported an epoch")
    return sorted(rows, key=lambda r: r["end"])


def to_target(rows: list[dict], target: float) -> dict:
    """Trial-epochs (all trials together) and wall time spent until val_dice first reached
    ``target``; None where it never did (then ``total`` is a lower bound)."""
    began = min(r["start"] for r in rows)
    for count, row in enumerate(rows, start=1):
        if row["val_dice"] >= target:
            return {"trial_epochs": count, "wall_s": row["end"] - began, "total": len(rows)}
    return {"trial_epochs": None, "wall_s": None, "total": len(rows)}


# ---- memory ---------------------------------------------------------------------------------
# Two folders of Carvana's image shape at scale 0.5 (959x640 px), 0.5 GB and 4 GB decoded, each
# decoded once into the disk cache (timed: the cache's build rate and size) and swept with 1, 2
# and 4 concurrent trials while Ray's object store is capped below the big set's size. Trials
# map the cache's files: if they share its pages, what a trial adds does not grow with the set.
# Both sets validate on the same images' count (val_images) in the same batches (eval_batch):
# a trial's memory peaks while it scores whole images, so any difference there would look like
# memory growing with the data set (seen: 2 % of each set, 4 images against 35, passed off
# 245 MB per trial as growth, 2026-11-26).
MEMORY = {"full": dict(width=959, height=640, big_images=1750, small_images=219, distinct=64,
                       net_width=8, batch=4, eval_batch=4, epochs=1, crop=128, val_images=35,
                       counts=(1, 2, 4), small_counts=(1, 2, 4), cpus=0.5,
                       object_store_mb=1024),
          "tiny": dict(width=48, height=40, big_images=16, small_images=8, distinct=4,
                       net_width=4, batch=4, eval_batch=4, epochs=1, crop=32, val_images=1,
                       counts=(1, 2), small_counts=(), cpus=0.5, object_store_mb=None)}


def run_memory(ctx: Context) -> Outcome:
    check_supported()
    s = MEMORY["tiny" if ctx.tiny else "full"]
    big = cached_folder(ctx, s, s["big_images"], "big")
    peaks = {n: memory_peak(ctx, s, big, n) for n in s["counts"]}
    small = cached_folder(ctx, s, s["small_images"], "small") if s["small_counts"] else None
    small_peaks = {n: memory_peak(ctx, s, small, n) for n in s["small_counts"]}
    total = {n: p["pss"] for n, p in peaks.items()}
    anon = {n: p["anon"] for n, p in peaks.items()}
    growth, growth_anon = slope(total), slope(anon)
    plain_mb = plain_peak(ctx, s, big)
    figures = {"peak_pss_mb": total, "peak_anon_pss_mb": anon, "growth_per_trial_mb": growth,
               "anon_growth_per_trial_mb": growth_anon, "data_mb": big["data_mb"],
               "cache": {"big": big["build"], "small": small and small["build"]},
               "plain_process_mb": plain_mb, "small_data_peaks_mb": small_peaks, "setup": s,
               "big_data_peaks": peaks}
    headline = (f"+{growth:.0f} MB per concurrent trial (peaks "
                + ", ".join(f"{k}: {v:.0f}" for k, v in total.items())
                + f" MB) with a {big['data_mb']:.0f} MB data set")
    met = None
    if small_peaks:
        copied = growth - slope({n: p["pss"] for n, p in small_peaks.items()})
        figures["data_added_per_trial_mb"] = copied
        headline += f"; of that, {copied:.0f} MB grows with the data set"
        met = copied <= big["data_mb"] / 2
    build = big["build"]
    return Outcome(
        ratio=growth, met=met, headline=headline, figures=figures,
        notes=["peak PSS summed over the sweep's process tree (driver, Ray, trial workers; "
               "shared pages, the cache's mapped files among them, counted once), sampled "
               "every 0.25 s; anonymous PSS (heaps, tensors) shown apart: "
               + ", ".join(f"{k}: {v:.0f}" for k, v in anon.items()) + " MB",
               f"{s['big_images']} images (and {s['small_images']} for the comparison) of "
               f"{s['width']}x{s['height']} px, decoded once into the disk cache and mapped by "
               f"every trial; Ray's object store capped at "
               f"{s['object_store_mb'] or '(not in tiny mode)'} MB; UNet "
               f"width {s['net_width']}, {s['crop']} px training crops, batch {s['batch']}, "
               f"{s['epochs']} epoch, whole-image validation of {s['val_images']} images on both "
               f"sets (a trial's peak is its validation), trials of "
               f"{s['cpus']} CPU; a plain `train` process peaks at {plain_mb:.0f} MB",
               f"cache build: {build['images']} images in {build['seconds']:.1f} s "
               f"({build['images_per_s']:.1f} images/s on {os.cpu_count()} cores), "
               f"{build['cache_mb']:.0f} MB on disk ({build['folder_mb']:.0f} MB of PNG files)"])


def cached_folder(ctx: Context, s: dict, images: int, tag: str) -> dict:
    """A crack folder of ``images`` files, decoded into a fresh cache (timed)."""
    from data_pipeline import load_data

    folder = ctx.work_dir / f"data_{tag}"
    if not (folder / "imgs").is_dir() or len(list((folder / "imgs").iterdir())) != images:
        shutil.rmtree(folder, ignore_errors=True)
        write_crack_folder(folder, images, s["width"], processes=os.cpu_count() or 1,
                           height=s["height"], distinct=s["distinct"])
    cache_dir = ctx.work_dir / f"cache_{tag}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    began = time.perf_counter()
    data = load_data(str(folder), cache_dir=str(cache_dir), crop=s["crop"])
    seconds = time.perf_counter() - began
    cache_mb = sum(p.stat().st_size for p in Path(data.source["cache"]).iterdir()) / 2**20
    build = {"images": len(data), "seconds": seconds, "images_per_s": len(data) / seconds,
             "cache_mb": cache_mb, "folder_mb": image_bytes(folder) / 2**20}
    return {"folder": folder, "cache_dir": cache_dir, "build": build,
            "data_mb": images * s["width"] * s["height"] * 4 / 2**20}


def memory_values(name: str, s: dict, data: dict, count: int) -> dict:
    # val_images on either set (see MEMORY): the longer the validation phase, the likelier
    # concurrent trials' peaks coincide.
    val_percent = 100 * s["val_images"] / data["build"]["images"]
    train = {"model": "unet", "width": s["net_width"], "data_dir": str(data["folder"]),
             "cache_dir": str(data["cache_dir"]), "crop": s["crop"],
             "val_percent": val_percent, "device": "cpu", "batch_size": s["batch"],
             "eval_batch_size": s["eval_batch"]}
    return experiment_values(name, train, FIXED_SPACE, trials=count, concurrency=count,
                             max_epochs=s["epochs"], grace_period=s["epochs"], cpus=s["cpus"])


def slope(peaks: dict) -> float:
    low, high = min(peaks), max(peaks)
    return (peaks[high] - peaks[low]) / (high - low)


def memory_peak(ctx: Context, s: dict, data: dict, count: int) -> dict:
    tag = f"memory{data['build']['images']}x{count}"
    return sampled_sweep_peak(ctx, memory_values(tag, s, data, count), tag, s["object_store_mb"])


def plain_peak(ctx: Context, s: dict, data: dict) -> float:
    values = memory_values("memory_plain", s, data, 1)
    config = trial_config_file(values, {"seed": 0}, ctx.work_dir / "plain" / "trial0")
    return sampled_plain_peak(config, ctx.work_dir / "plain")


def sampled_sweep_peak(ctx: Context, values: dict, tag: str,
                       object_store_mb: int | None = None) -> dict:
    """{"pss": peak MB, "anon": peak anonymous MB} of the sweep's process tree."""
    runs_dir = ctx.work_dir / "runs" / tag
    if ctx.tiny:  # this process's own tree (it holds the Ray session)
        with PeakSampler(os.getpid()) as sampler:
            run_sweep(values, str(runs_dir))
        return peak_figures(sampler)
    child = start_child("bench.sweep_sides:run_sweep",
                        {"values": values, "runs_dir": str(runs_dir),
                         "num_cpus": os.cpu_count(), "object_store_mb": object_store_mb},
                        ctx.work_dir, tag)
    sampler = sample_until_exit(child.process, timeout=SWEEP_TIMEOUT)
    child.result(timeout=10)  # raises if the sweep failed
    return peak_figures(sampler)


def peak_figures(sampler: PeakSampler) -> dict:
    return {"pss": sampler.peak_mb, "anon": sampler.peak_anon_mb,
            "anon_by_process_kind": sampler.peak_anon_by_kind,
            "sample_period_s": sampler.mean_period_s()}


def sampled_plain_peak(config: Path, work: Path) -> float:
    with (work / "plain.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "sweep", "train", "--config",
                                    str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT)
        peak = wait_and_sample(process, timeout=SWEEP_TIMEOUT)
    if process.returncode != 0:
        raise BenchError(f"plain training failed (exit {process.returncode}): {work}/plain.log")
    return peak


# ---- wandb ----------------------------------------------------------------------------------
WANDB_GOAL = 1.05
MIRROR_ON = {"mode": "offline", "image_count": 4}


def run_wandb(ctx: Context) -> Outcome:
    s = OVERHEAD["tiny" if ctx.tiny else "full"]
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}

    def side(wandb: dict | None, name: str):
        def run_once(repeat: int) -> dict:
            result = sweep_side(ctx, fixed_sweep(f"wandb_{name}", s, wandb=wandb),
                                f"{name}{repeat}", env)
            runs = Path(result["run_dir"]) / WANDB_DIR
            result["wandb_runs"] = len(list(runs.glob("*run-*"))) if runs.exists() else 0
            return result
        return run_once

    runs = interleave({"off": side(None, "off"), "on": side(MIRROR_ON, "on")},
                      ctx.repeats or s["repeats"])
    if not all(r["wandb_runs"] for r in runs["on"]):
        raise BenchError("the W&B mirror wrote no runs under RUN_DIR/wandb: a mirrored sweep "
                         "that mirrors nothing measures nothing")
    off, on = ([r["sweep_s"] for r in runs[k]] for k in ("off", "on"))
    value = ratio(median(on), median(off))
    return Outcome(
        ratio=value, met=value <= WANDB_GOAL,
        headline=f"{value:.3f} ({median(on):.1f} s mirrored vs {median(off):.1f} s without)",
        figures={"sweep_s": {"off": spread(off), "on": spread(on)}, "setup": s, "runs": runs},
        notes=[f"the overhead sweep ({s['trials']} trials x {s['epochs']} epochs, "
               f"{s['concurrency']} at a time) with the W&B mirror off and on (offline, "
               f"validation images on); median of {len(on)} alternating runs"])


# ---- modes: reproducible vs async search ------------------------------------------------------
MODES_GOAL = 1.15
MODES_TINY = {"train": {"synthetic_images": 16, "synthetic_size": 32, "width": 4},
              "search": {"trials": 3, "concurrency": 2, "seeds": 1, "startup_trials": 2},
              "scheduler": {"max_epochs": 2, "grace_period": 1}}


def modes_values(tiny: bool, mode: str) -> dict:
    """experiments/quickstart.yaml (shrunk in tiny mode) with search.mode set."""
    values = yaml.safe_load((REPO_ROOT / "experiments" / "quickstart.yaml").read_text())
    for section, changes in (MODES_TINY.items() if tiny else ()):
        values[section].update(changes)
    values["search"]["mode"] = mode
    values["name"] = f"modes_{mode}"
    values["wandb"] = {"enabled": False}
    return values


def run_modes(ctx: Context) -> Outcome:
    repeats = ctx.repeats or (1 if ctx.tiny else 3)

    def side(mode: str):
        return lambda repeat: sweep_side(ctx, modes_values(ctx.tiny, mode), f"{mode}{repeat}")

    runs = interleave({"reproducible": side("reproducible"), "async": side("async")}, repeats)
    repro, asyn = ([r["sweep_s"] for r in runs[k]] for k in ("reproducible", "async"))
    value = ratio(median(repro), median(asyn))
    best = {k: [r["best_val_dice"] for r in runs[k]] for k in runs}
    return Outcome(
        ratio=value, met=value <= MODES_GOAL,
        headline=f"{value:.2f}x ({median(repro):.1f} s reproducible vs {median(asyn):.1f} s "
                 f"async)",
        figures={"sweep_s": {"reproducible": spread(repro), "async": spread(asyn)},
                 "best_val_dice": best, "runs": runs},
        notes=["the quickstart sweep in search.mode reproducible and async, alternating, "
               f"median of {len(repro)} each; reproducible runs all give one best val_dice "
               f"({sorted(set(best['reproducible']))}), async ones may not "
               f"({sorted(set(best['async']))})"])
