"""Where the training loop loses time against its own step on a GPU (UNet width 64, 256 px,
batch 64, bf16 autocast, channels_last, compiled, deterministic).

bench/gpu_h200.md: the step alone reached 37 % MFU, training.loop.train on 800 images (epoch 2
of 2, 4 workers) 22.8 %. Note what the loop's `samples_per_s` times: train_one_epoch only, to a
final synchronize; since bench/gpu_h200_loop_before_prefetch.md the loop starts each later
epoch's iterator before validating the one before, so its first batches are built outside the
window. Validation and the checkpoint fall outside it too (they count in `epoch_seconds`).
Three kinds of variant, each in this one process, on one synthetic set decoded once:
- `loop`: training.loop.train itself, 3200 images, 3 epochs; epochs 2 and 3 are steady (the
  first pays the compile and the workers' start);
- `instrumented`: the same train() with its epoch swapped for a copy that synchronizes around
  each part, so every second of the timed window is attributed: iter(), the first batch, the
  waits for later batches, the copy to the GPU, the steps. Validation, scheduler, checkpoint
  save and prune are timed apart;
- `loader`: the training DataLoader alone (pinned, no GPU work): the pace the workers keep.
A variant that fails (out of memory, a compile error) is recorded and the next one runs.

    python -m bench.gpu_loop --out DIR [--budget-s 420]
    python -m bench.gpu_loop --tiny --device cpu --out DIR   # the code path (the tests)
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

from bench.gpu_mfu import flops_per_image, peak_flops, sync, synthetic

FORBIDDEN = ("ray", "optuna", "wandb", "pandas")  # absent on the GPU machine


@dataclass(frozen=True)
class Sizes:
    width: int
    px: int
    images: int
    batch: int
    epochs: int
    compile: bool
    threads: int  # torch's CPU threads; 0 = its default, what a trial gets


# 3200 images, 10 % held out: 2880 = 45 whole batches of 64, so no odd last batch (which would
# make torch.compile build a second, dynamic-shape graph) and 45 steps to spread the epoch's
# start over (the 800-image run had 12).
FULL = Sizes(width=64, px=256, images=3200, batch=64, epochs=3, compile=True, threads=0)
# Inductor on a CPU compiles C++ for minutes: the tiny run checks the code path eagerly. One
# thread: on a busy 2-core machine, torch's spinning thread pool made a step 100x slower.
TINY = Sizes(width=4, px=32, images=32, batch=4, epochs=3, compile=False, threads=1)
# (label, kind, num_workers): the order is the priority when time runs short.
PLAN = [("loop nw8", "loop", 8), ("instrumented nw4", "instrumented", 4),
        ("loader nw4", "loader", 4), ("loop nw4", "loop", 4),
        ("instrumented nw12", "instrumented", 12), ("loader nw12", "loader", 12),
        ("loop nw12", "loop", 12)]
TINY_WORKERS = {4: 0, 8: 1, 12: 1}  # both loader paths (main process, workers), cheaply


def train_config(sizes: Sizes, workers: int, device, out_dir: Path):
    from training.config import TrainConfig

    return TrainConfig(model="unet", width=sizes.width, synthetic_images=sizes.images,
                       synthetic_size=sizes.px, batch_size=sizes.batch,
                       eval_batch_size=sizes.batch, epochs=sizes.epochs, device=str(device),
                       amp=True, deterministic=True, compile=sizes.compile,
                       num_workers=workers, threads=sizes.threads, keep_checkpoints=1,
                       out_dir=str(out_dir))


def loop_rows(history: list[dict]) -> list[dict]:
    keep = ("epoch", "samples_per_s", "epoch_seconds", "train_samples", "gpu_peak_mem_mb")
    return [{key: row[key] for key in keep if key in row}
            | {"train_s": row["train_samples"] / row["samples_per_s"]} for row in history]


def time_loop(config, data) -> dict:
    from training.loop import train

    return {"epochs": loop_rows(train(config, data).history)}


# ---- the instrumented epoch ------------------------------------------------------------------

def timed_train_one_epoch(records: list[dict]):
    """training.loop.train_one_epoch with a synchronize and a clock around each part. The
    window is the loop's (from before iter() to the final synchronize), so its seconds are
    comparable; the synchronizes cost the overlap of one step's launch with the last one's
    kernels, so `step_s` is a ceiling on what the GPU needs."""
    import torch

    from training.loop import to_device, train_step

    def train_one_epoch(model, loader, optimizer, scaler, config, device, amp_dtype,
                        memory_format, desc: str, batches=None) -> tuple[float, float]:
        model.train()
        sync(device)
        parts = {"iter_s": 0.0, "first_batch_s": 0.0, "wait_s": 0.0, "copy_s": 0.0,
                 "step_s": 0.0}
        waits, steps = [], []
        loss_sum, seen = torch.zeros((), device=device), 0
        start = clock = time.perf_counter()

        def lap(key: str) -> float:
            nonlocal clock
            now = time.perf_counter()
            spent, clock = now - clock, now
            parts[key] += spent
            return spent

        # The loop starts the next epoch's iterator before validating (so its first batches
        # are built meanwhile); the first epoch's starts here.
        batches = iter(loader) if batches is None else batches
        lap("iter_s")
        for index, (images, masks) in enumerate(batches):
            waits.append(lap("first_batch_s" if index == 0 else "wait_s"))
            images, masks = to_device(images, masks, device, memory_format)
            sync(device)
            lap("copy_s")
            loss = train_step(model, images, masks, optimizer, scaler, config.grad_clip,
                              amp_dtype)
            sync(device)
            steps.append(lap("step_s"))
            loss_sum += loss * len(images)
            seen += len(images)
            clock = time.perf_counter()  # the bookkeeping above goes to `other_s`
        sync(device)
        seconds = time.perf_counter() - start
        records.append(epoch_parts(parts, waits, steps, seen, seconds))
        return float(loss_sum) / max(seen, 1), seconds

    return train_one_epoch


def epoch_parts(parts: dict, waits: list[float], steps: list[float], seen: int,
                seconds: float) -> dict:
    ordered = sorted(steps)
    return {**parts, "train_s": seconds, "other_s": seconds - sum(parts.values()),
            "steps": len(steps), "samples": seen, "samples_per_s": seen / seconds,
            "step_samples_per_s": seen / max(parts["step_s"], 1e-9),
            "median_step_ms": 1e3 * ordered[len(ordered) // 2] if ordered else None,
            "max_wait_ms": 1e3 * max(waits[1:], default=0.0),
            "waits_over_1ms": sum(w > 1e-3 for w in waits[1:])}


def timed(function, device, seconds: list[float]):
    """``function`` with its synchronized wall time appended to ``seconds`` per call."""
    def wrapper(*args, **kwargs):
        sync(device)
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            sync(device)
            seconds.append(time.perf_counter() - start)
    return wrapper


def time_instrumented(config, data, device) -> dict:
    """train() itself, so the model, optimizer and loaders are built exactly as a trial's;
    only its epoch function and the per-epoch calls after it are swapped for timed ones."""
    from training import checkpoints as ckpt
    from training import loop

    records: list[dict] = []
    after = {name: [] for name in ("val_s", "scheduler_s", "checkpoint_s", "prune_s",
                                   "metrics_s")}
    swaps = [(loop, "train_one_epoch", timed_train_one_epoch(records)),
             (loop, "evaluate", timed(loop.evaluate, device, after["val_s"])),
             (loop, "step_scheduler", timed(loop.step_scheduler, device, after["scheduler_s"])),
             (ckpt, "save_checkpoint", timed(ckpt.save_checkpoint, device,
                                             after["checkpoint_s"])),
             (ckpt, "prune_checkpoints", timed(ckpt.prune_checkpoints, device,
                                               after["prune_s"])),
             (loop, "append_jsonl", timed(loop.append_jsonl, device, after["metrics_s"]))]
    with contextlib.ExitStack() as stack:
        for owner, name, replacement in swaps:
            stack.enter_context(mock.patch.object(owner, name, replacement))
        history = loop.train(config, data).history
    rows = []
    for index, (parts, metrics) in enumerate(zip(records, history)):
        row = {"epoch": metrics["epoch"], **parts,
               **{name: seconds[index] for name, seconds in after.items()},
               "epoch_seconds": metrics["epoch_seconds"],
               "loop_samples_per_s": metrics["samples_per_s"]}
        row["outside_train_s"] = row["epoch_seconds"] - row["train_s"]
        rows.append(row)
    return {"epochs": rows}


# ---- the loader alone ------------------------------------------------------------------------

def time_loader(config, data, device) -> dict:
    """The training loader as train() builds it, drained epoch by epoch with no GPU work."""
    from data_pipeline import split_indices
    from training.loop import make_loaders

    train_idx, val_idx = split_indices(len(data), config.val_percent, config.split_seed)
    loader, _ = make_loaders(config, data, train_idx, val_idx,
                             pin=config.pin_memory and device.type == "cuda")
    rows = []
    for epoch in range(1, config.epochs + 1):
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        seen, first, megabytes = 0, None, 0.0
        for images, masks in loader:
            first = first if first is not None else time.perf_counter() - start
            seen += len(images)
            megabytes = max(megabytes, (images.nbytes + masks.nbytes) / 2**20)
        seconds = time.perf_counter() - start
        # batch_mb: what each batch carries (masks are int64: most of it) through the
        # workers' shared memory, the pin thread and the copy to the GPU.
        rows.append({"epoch": epoch, "first_batch_s": first, "seconds": seconds,
                     "samples_per_s": seen / seconds, "batch_mb": megabytes})
    return {"epochs": rows}


# ---- the plan --------------------------------------------------------------------------------

def run_variant(kind: str, config, data, device) -> dict:
    if kind == "loop":
        return time_loop(config, data)
    if kind == "instrumented":
        return time_instrumented(config, data, device)
    return time_loader(config, data, device)


def summarise(figures: dict, kind: str, flops: float, peak: float | None) -> None:
    """Per epoch MFU, and the steady epochs' (2 onwards: the first pays the compile and the
    workers' start) mean samples/s."""
    rows = figures.get("epochs", [])
    for row in rows:
        row["mfu"] = row["samples_per_s"] * flops / peak if peak and kind != "loader" else None
    steady = rows[1:] or rows
    if steady:
        figures["steady_samples_per_s"] = sum(r["samples_per_s"] for r in steady) / len(steady)
        figures["steady_mfu"] = (figures["steady_samples_per_s"] * flops / peak
                                 if peak and kind != "loader" else None)


def measure(device_name: str, tiny: bool, budget_s: float, work: Path, emit) -> dict:
    import torch

    from training.config import TrainConfig
    from training.determinism import resolve_device
    from training.loop import autocast_dtype

    began = time.time()
    device = resolve_device(device_name)
    sizes = TINY if tiny else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    flops = flops_per_image(sizes.width, sizes.px, device,
                            autocast_dtype(TrainConfig(amp=True), device))
    head = {"device": name, "torch": torch.__version__, "cpus": os.cpu_count(),
            "sizes": asdict(sizes), "deterministic": True, "flops_per_image": flops,
            "peak_flops": peak_flops(name), "budget_s": budget_s, "variants": {},
            "skipped": []}
    start = time.perf_counter()
    data = synthetic(sizes.images, sizes.px)  # decoded (or mapped) once for every variant
    head["data_s"] = time.perf_counter() - start
    emit(head)
    # Seconds of the latest variant of each kind: the first pays the cold compile, the later
    # ones find inductor's cache, so a maximum would skip variants that fit.
    last: dict[str, float] = {}
    for label, kind, workers in PLAN:
        workers = TINY_WORKERS[workers] if tiny else workers
        left = budget_s - (time.time() - began)
        need = last.get(kind, max(last.values(), default=0.0))
        if left < need * 1.2 or left < 5:
            head["skipped"].append(f"{label}: {left:.0f} s left of the budget, ~{need:.0f} s "
                                   "needed")
            emit(head)
            continue
        print(f"[gpu_loop] {label} ({left:.0f} s left)", flush=True)
        config = train_config(sizes, workers, device, work / label.replace(" ", "_"))
        variant_start = time.time()
        figures = run_guarded(kind, config, data, device)
        figures.update(kind=kind, num_workers=workers, seconds=time.time() - variant_start)
        summarise(figures, kind, flops, head["peak_flops"])
        last[kind] = figures["seconds"]
        head["variants"][label] = figures
        emit(head)
    head["wall_s"] = time.time() - began
    head["forbidden_loaded"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    emit(head)
    return head


def run_guarded(kind: str, config, data, device) -> dict:
    import torch

    try:
        return run_variant(kind, config, data, device)
    except Exception as error:  # noqa: BLE001 - out of memory, compile error: next variant
        return {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
    finally:
        gc.collect()  # the loaders' persistent workers go with their last reference
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---- the report ------------------------------------------------------------------------------

def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if digits == -1 else f"{value:.{digits}f}"
    return str(value)


def markdown(head: dict) -> str:
    sizes = head["sizes"]
    lines = ["# Training loop vs step (bench/gpu_loop.py)\n",
             f"{head['device']}, {head['cpus']} CPUs, torch {head['torch']}; UNet width "
             f"{sizes['width']}, {sizes['px']} px, batch {sizes['batch']}, {sizes['images']} "
             f"images, compile {sizes['compile']}, deterministic; "
             f"{head['flops_per_image'] / 1e9:.1f} GFLOP per image; data ready in "
             f"{fmt(head.get('data_s'), 1)} s.\n",
             "| variant | epoch | samples/s | MFU | train s | iter + first batch s | waits s | "
             "copy s | steps s | other s | step img/s | val s | checkpoint s | epoch s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, figures in head["variants"].items():
        if "error" in figures:
            lines.append(f"| {label} | - | {figures['error'][:120]} |" + " - |" * 11)
            continue
        for row in figures["epochs"]:
            lines.append("| " + " | ".join([
                label, str(row["epoch"]), fmt(row["samples_per_s"], 1), fmt(row.get("mfu"), -1),
                fmt(row.get("train_s", row.get("seconds"))),
                fmt(row["iter_s"] + row["first_batch_s"]) if "iter_s" in row
                else fmt(row.get("first_batch_s")),
                fmt(row.get("wait_s")), fmt(row.get("copy_s")), fmt(row.get("step_s")),
                fmt(row.get("other_s")), fmt(row.get("step_samples_per_s"), 1),
                fmt(row.get("val_s")), fmt(row.get("checkpoint_s")),
                fmt(row.get("epoch_seconds"))]) + " |")
    if head["skipped"]:
        lines.append("\nSkipped: " + "; ".join(head["skipped"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_loop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for gpu_loop.json (rewritten per variant) and gpu_loop.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="width 4, 32 px, 32 images, batch "
                        "4, 0/1 workers, eager: proves the code path; figures mean nothing")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="wall seconds for everything, warm-up included; variants that "
                             "would not fit are skipped and named")
    args = parser.parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
    args.out.mkdir(parents=True, exist_ok=True)

    def emit(state: dict) -> None:  # a kill mid-way keeps what was measured
        (args.out / "gpu_loop.json").write_text(json.dumps(state, indent=1))
        (args.out / "gpu_loop.md").write_text(markdown(state))

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu (and --tiny)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu_loop-") as work:
        measure(args.device, args.tiny, args.budget_s, Path(work), emit)
    print((args.out / "gpu_loop.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
