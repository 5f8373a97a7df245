"""Where the training loop loses time against its own step on a GPU (UNet width 64, 256 px,
batch 64, bf16 autocast, channels_last, compiled, deterministic).

tools/gpu/results/gpu_h200.md: the step alone reached 37 % MFU, training.loop.train on 800
images (epoch 2 of 2, 4 workers) 22.8 %. Note what the loop's `samples_per_s` times:
train_one_epoch only, to a final synchronize; since
tools/gpu/results/gpu_h200_loop_before_prefetch.md the loop starts each later
epoch's iterator before validating the one before, so its first batches are built outside the
window. Validation and the checkpoint fall outside it too (they count in `epoch_seconds`).
Three kinds of variant, each in this one process, on one synthetic set decoded once:
- `loop`: training.loop.train itself, 3200 images, 3 epochs; epochs 2 and 3 are steady (the
  first pays the compile and the workers' start);
- `instrumented`: the same train() under torch.profiler. The loop's own profiler ranges
  attribute the host's seconds in each epoch's timed window: iter(), the first batch, the waits
  for later batches, the copy to the GPU, the steps; the device's work gives its busy and idle
  seconds in the window. Validation and the checkpoint (save and prune) are timed apart;
- `loader`: the training DataLoader alone (pinned, no GPU work): the pace the workers keep.
A variant that fails (out of memory, a compile error) is recorded and the next one runs.

    python -m tools.gpu.loop --out DIR [--budget-s 420]
    python -m tools.gpu.loop --tiny --device cpu --out DIR   # the code path (the tests)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.gpu_mfu import flops_per_image, peak_flops, synthetic

FORBIDDEN = ("ray", "optuna", "wandb", "pandas")  # absent on the GPU machine
# The DataLoader's own profiler range around each batch it hands out (torch/utils/data).
LOADER_WAIT = "enumerate(DataLoader)#"
# Kineto's trace categories: record_function ranges; the device's kernels and copies (its
# "gpu_user_annotation" twins of the ranges span work counted already).
HOST_RANGES = ("user_annotation",)
DEVICE_WORK = ("kernel", "gpu_memcpy", "gpu_memset")


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


# ---- the profiled epoch ----------------------------------------------------------------------

def time_instrumented(config, data, device) -> dict:
    """train() itself under torch.profiler: the loop's own ranges (training/loop.py's
    `profiled` functions, its "iter" and "checkpoint" blocks, and the DataLoader's range around
    each batch it hands out) say where every epoch went, with nothing of the loop copied or
    swapped. The profiler costs a few microseconds per op: the `loop` variants give the clean
    samples/s."""
    from torch.profiler import ProfilerActivity, profile

    from training.loop import train

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        history = train(config, data).history
    # Kineto writes its trace as it is; profiler.events() would first build a tree of every
    # op in Python (minutes for a run's ~10^5 ops).
    trace = Path(config.out_dir) / "trace.json"
    profiler.export_chrome_trace(str(trace))
    spans = [Span.of(event) for event in json.loads(trace.read_text())["traceEvents"]
             if event.get("cat") in HOST_RANGES + DEVICE_WORK]
    windows = [s for s in spans if s.host and s.name == "train_one_epoch"]
    next_starts = [w.start for w in windows[1:]] + [float("inf")]
    return {"epochs": [epoch_row(spans, window, next_start, metrics, cuda)
                       for window, next_start, metrics in zip(windows, next_starts, history)]}


@dataclass(frozen=True)
class Span:
    """A trace event: a named range on the host, or work on the device; in seconds."""
    name: str
    host: bool
    start: float
    end: float

    @classmethod
    def of(cls, event: dict) -> Span:
        start = event["ts"] / 1e6  # the trace counts microseconds
        return cls(event["name"], event["cat"] in HOST_RANGES, start, start + event["dur"] / 1e6)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def epoch_row(spans: list[Span], window: Span, next_start: float, metrics: dict,
              cuda: bool) -> dict:
    """One epoch: the loop's own figures (its training window, samples/s, epoch seconds), the
    host seconds of each part in the window, the device's busy seconds there, and the
    validation and checkpoint after it (before the next epoch's window)."""
    train_s = metrics["train_samples"] / metrics["samples_per_s"]  # the loop's own window
    inside = [s for s in spans if window.start <= s.start and s.end <= window.end]
    parts, waits, steps = window_parts([s for s in inside if s.host])
    busy = busy_seconds([s for s in inside if not s.host]) if cuda else None
    after = [s for s in spans if s.host and window.end <= s.start and s.end <= next_start]
    return {"epoch": metrics["epoch"], **parts, "train_s": train_s,
            "other_s": train_s - sum(parts.values()), "steps": len(steps),
            "samples": metrics["train_samples"], "samples_per_s": metrics["samples_per_s"],
            "gpu_busy_s": busy, "gpu_idle_s": None if busy is None else train_s - busy,
            # On a GPU the host only launches a step: its pace there is the device's.
            "step_samples_per_s": metrics["train_samples"] / max(busy or sum(steps), 1e-9),
            "median_step_ms": 1e3 * sorted(steps)[len(steps) // 2] if steps else None,
            "max_wait_ms": 1e3 * max(waits[1:], default=0.0),
            "waits_over_1ms": sum(w > 1e-3 for w in waits[1:]),
            "val_s": seconds_in(after, "evaluate"), "checkpoint_s": seconds_in(after, "checkpoint"),
            "epoch_seconds": metrics["epoch_seconds"],
            "loop_samples_per_s": metrics["samples_per_s"],
            "outside_train_s": metrics["epoch_seconds"] - train_s}


def window_parts(ranges: list[Span]) -> tuple[dict, list[float], list[float]]:
    """Host seconds of the window's parts; each batch's wait and each step's seconds."""
    waits = [s.seconds for s in ranges if s.name.startswith(LOADER_WAIT)]
    steps = [s.seconds for s in ranges if s.name == "train_step"]
    parts = {"iter_s": seconds_in(ranges, "iter"), "first_batch_s": sum(waits[:1]),
             "wait_s": sum(waits[1:]), "copy_s": seconds_in(ranges, "to_device"),
             "step_s": sum(steps)}
    return parts, waits, steps


def seconds_in(spans: list[Span], name: str) -> float:
    return sum(s.seconds for s in spans if s.name == name)


def busy_seconds(work: list[Span]) -> float:
    """Seconds in which the device ran anything: the union of its work's spans (a copy and a
    kernel on two streams may overlap)."""
    busy, reach = 0.0, float("-inf")
    for span in sorted(work, key=lambda s: s.start):
        if span.end > reach:
            busy += span.end - max(span.start, reach)
            reach = span.end
    return busy


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
    """Per epoch MFU over the training part (the loop's timed window) and over the whole epoch
    (validation and the checkpoint in: what a sweep's epoch costs, issue 22), and the steady
    epochs' (2 onwards: the first pays the compile and the workers' start) means."""
    rows = figures.get("epochs", [])
    for row in rows:
        row["mfu"] = row["samples_per_s"] * flops / peak if peak and kind != "loader" else None
        samples = row.get("train_samples") or row.get("samples")
        row["mfu_whole_epoch"] = (samples * flops / row["epoch_seconds"] / peak
                                  if peak and samples and row.get("epoch_seconds") else None)
    steady = rows[1:] or rows
    if steady:
        figures["steady_samples_per_s"] = sum(r["samples_per_s"] for r in steady) / len(steady)
        figures["steady_mfu"] = (figures["steady_samples_per_s"] * flops / peak
                                 if peak and kind != "loader" else None)
        whole = [r["mfu_whole_epoch"] for r in steady]
        figures["steady_mfu_whole_epoch"] = (sum(whole) / len(whole)
                                             if None not in whole else None)


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
    lines = ["# Training loop vs step (tools/gpu/loop.py)\n",
             f"{head['device']}, {head['cpus']} CPUs, torch {head['torch']}; UNet width "
             f"{sizes['width']}, {sizes['px']} px, batch {sizes['batch']}, {sizes['images']} "
             f"images, compile {sizes['compile']}, deterministic; "
             f"{head['flops_per_image'] / 1e9:.1f} GFLOP per image; data ready in "
             f"{fmt(head.get('data_s'), 1)} s.\n",
             "| variant | epoch | samples/s | MFU | MFU whole epoch | train s | iter + first "
             "batch s | waits s | copy s | steps s | other s | GPU idle s | step img/s | val s | "
             "checkpoint s | epoch s |", "|---|" + "---|" * 15]
    for label, figures in head["variants"].items():
        if "error" in figures:
            lines.append(f"| {label} | - | {figures['error'][:120]} |" + " - |" * 13)
            continue
        for row in figures["epochs"]:
            lines.append("| " + " | ".join([
                label, str(row["epoch"]), fmt(row["samples_per_s"], 1), fmt(row.get("mfu"), -1),
                fmt(row.get("mfu_whole_epoch"), -1),
                fmt(row.get("train_s", row.get("seconds"))),
                fmt(row["iter_s"] + row["first_batch_s"]) if "iter_s" in row
                else fmt(row.get("first_batch_s")),
                fmt(row.get("wait_s")), fmt(row.get("copy_s")), fmt(row.get("step_s")),
                fmt(row.get("other_s")), fmt(row.get("gpu_idle_s")),
                fmt(row.get("step_samples_per_s"), 1),
                fmt(row.get("val_s")), fmt(row.get("checkpoint_s")),
                fmt(row.get("epoch_seconds"))]) + " |")
    lines.append("\nInstrumented rows (torch.profiler): the parts are the host's seconds in the "
                 "loop's timed window; GPU idle is that window less the device's busy seconds, "
                 "and step img/s the images over those busy seconds (on a CPU: over the steps').")
    if head["skipped"]:
        lines.append("\nSkipped: " + "; ".join(head["skipped"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu.loop",
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
