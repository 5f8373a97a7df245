"""`gpu`: a standalone benchmark for a lent H100/H200. Needs torch, numpy, pillow, tqdm and pyyaml
only (no ray, optuna, wandb or pandas are imported on this path), and a plain checkout:

    python -m bench.gpu_bench                       # full: under 8 minutes, one table
    python -m bench.gpu_bench --tiny --device cpu   # proves the code path (the tests)

Part 1, full-width UNet (64) at 256 px: our loop with bf16 autocast + channels_last vs our loop
in float32, vs the Pytorch-UNet-style reference loop with its autocast (float16 + GradScaler),
and (for the record) ours with cudnn.benchmark instead of deterministic kernels. Each side is a
fresh process; sides alternate (A B C D, D C B A); headline = ratio of median samples/s.
Part 2, a small UNet (width 16, 128 px): 1, 2 and 4 trainings started together as processes on
one GPU; headline = their aggregate samples/s over one training alone.
The table goes to stdout and, as gpu_bench.md / gpu_bench.json, to --out or $OUT when set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.child import BenchError, release_when_ready, run_in_child, start_child
from bench.data_folder import write_crack_folder
from bench.machine import machine_info, machine_line
from bench.measure import median, ratio, spread
from bench.sides import LoopSpec

GOAL_PRECISION = 2.0  # bf16 + channels_last vs float32 (and vs the reference)
GOAL_SHARING = 2.5  # 4 trainings sharing the GPU vs 1

OURS, REFERENCE = "bench.sides:train_ours", "bench.sides:train_reference_side"
SIDES = {  # name -> (child target, options)
    "ours bf16+CL": (OURS, {"amp": True, "channels_last": True}),
    "ours fp32": (OURS, {"amp": False, "channels_last": False}),
    "reference autocast": (REFERENCE, {"amp": True}),
    "ours bf16+CL benchmark": (OURS, {"amp": True, "channels_last": True,
                                      "deterministic": False}),
}


@dataclass
class GpuSize:
    big: dict  # LoopSpec fields for part 1 (plus images, file_px)
    small: dict  # LoopSpec fields for part 2
    repeats: int
    share_counts: tuple = (1, 2, 4)
    share_repeats: int = 2
    sides: tuple = tuple(SIDES)
    budget_s: float = 420.0  # start no run that may end past this (the script must stay < 8 min)


FULL = GpuSize(
    # 1000 images: an epoch's compute (~1-2 s in bf16) outweighs the per-epoch checkpoint.
    big=dict(images=1000, file_px=512, width=64, batch_size=16, epochs=3, num_workers=4,
             reference_workers=os.cpu_count() or 8),  # Pytorch-UNet: num_workers=os.cpu_count()
    small=dict(images=800, file_px=256, width=16, batch_size=8, epochs=8, num_workers=2),
    repeats=2)
TINY = GpuSize(
    big=dict(images=8, file_px=64, width=4, batch_size=2, epochs=2, num_workers=0),
    small=dict(images=8, file_px=64, width=4, batch_size=2, epochs=2, num_workers=0),
    repeats=1, share_counts=(1, 2), share_repeats=1, budget_s=240.0,
    sides=("ours bf16+CL", "ours fp32", "reference autocast"))  # the 4th only flips a flag


@dataclass
class Clock:
    """The time budget: a run is started only if the longest run so far still fits."""
    budget_s: float
    start: float = field(default_factory=time.time)
    longest: float = 0.0

    def left(self) -> float:
        return self.budget_s - (time.time() - self.start)

    def fits(self) -> bool:
        return self.left() > self.longest * 1.2

    def timed(self, function, *args):
        began = time.time()
        try:
            return function(*args)
        finally:
            self.longest = max(self.longest, time.time() - began)


def make_spec(sizes: dict, data_dir: Path, device: str) -> dict:
    fields = {k: v for k, v in sizes.items() if k not in ("images", "file_px")}
    return LoopSpec(data_dir=str(data_dir), scale=0.5, device=device, **fields).to_kwargs()


# ---- part 1: precision and layout ---------------------------------------------------------
def precision_round(spec: dict, work: Path, sides: tuple, round_: int, clock: Clock,
                    into: dict) -> None:
    for name in (sides if round_ % 2 == 0 else sides[::-1]):
        if name in into["errors"] or not clock.fits():
            continue
        target, options = SIDES[name]
        tag = f"{name.replace(' ', '_').replace('+', '')}_{round_}"
        kwargs = {"spec": spec, "out_dir": str(work / tag), **options}
        try:
            into["runs"][name].append(clock.timed(run_in_child, target, kwargs, work, tag,
                                                  max(clock.left(), 30)))
        except BenchError as error:  # e.g. out of memory: report it, keep going
            into["errors"][name] = str(error)


# ---- part 2: trainings sharing the GPU ------------------------------------------------------
def sharing_run(spec: dict, work: Path, count: int, tag: str, timeout: float) -> dict:
    barrier = work / f"{tag}_barrier"
    barrier.mkdir(parents=True)
    tags = [f"{tag}_p{i}" for i in range(count)]
    children = [start_child(OURS, {"spec": spec, "out_dir": str(work / t), "amp": True,
                                    "channels_last": True, "barrier_dir": str(barrier),
                                    "tag": t}, work, t) for t in tags]
    try:
        go = release_when_ready(barrier, tags, children, timeout)
        records = [child.result(max(timeout - (time.time() - go), 10)) for child in children]
    finally:
        for child in children:
            child.kill()
    samples = sum(r["n_train"] for r in records) * spec["epochs"]
    span = max(r["end"] for r in records) - go
    return {"count": count, "aggregate_samples_per_s": samples / span, "span_s": span,
            "per_process_samples_per_s": [r["samples_per_s"] for r in records],
            "peak_mem_mb": [r["peak_mem_mb"] for r in records]}


def sharing_round(spec: dict, work: Path, counts: tuple, round_: int, clock: Clock,
                  into: dict) -> None:
    for count in (counts if round_ % 2 == 0 else counts[::-1]):
        if count in into["errors"] or not clock.fits():
            continue
        try:
            into["runs"][count].append(clock.timed(sharing_run, spec, work, count,
                                                   f"share{count}_{round_}",
                                                   max(clock.left(), 30)))
        except BenchError as error:
            into["errors"][count] = str(error)


# ---- figures and the table ------------------------------------------------------------------
def summarise(precision: dict, sharing: dict) -> dict:
    sides = {name: {"samples_per_s": spread([r["samples_per_s"] for r in runs]),
                    "val_dice": median([r["val_dice"] for r in runs]),
                    "first_epoch_s": median([r["first_epoch_s"] for r in runs]),
                    "peak_mem_mb": max(r["peak_mem_mb"] for r in runs)}
             for name, runs in precision["runs"].items() if runs}
    shares = {count: {"aggregate_samples_per_s": spread([r["aggregate_samples_per_s"]
                                                         for r in runs])}
              for count, runs in sharing["runs"].items() if runs}
    comparisons = []
    fast = sides.get("ours bf16+CL")
    for other, goal in (("ours fp32", GOAL_PRECISION), ("reference autocast", GOAL_PRECISION),
                        ("ours bf16+CL benchmark", None)):
        if fast and other in sides:
            value = ratio(fast["samples_per_s"]["median"], sides[other]["samples_per_s"]["median"])
            comparisons.append({"what": f"ours bf16+CL vs {other}", "ratio": value,
                                "goal": goal, "met": None if goal is None else value >= goal})
    if 1 in shares:
        alone = shares[1]["aggregate_samples_per_s"]["median"]
        for count in sorted(c for c in shares if c != 1):
            value = ratio(shares[count]["aggregate_samples_per_s"]["median"], alone)
            goal = GOAL_SHARING if count == 4 else None
            comparisons.append({"what": f"{count} trainings sharing the GPU vs 1 (aggregate)",
                                "ratio": value, "goal": goal,
                                "met": None if goal is None else value >= goal})
    return {"sides": sides, "sharing": shares, "comparisons": comparisons,
            "errors": {**precision["errors"], **{str(k): v for k, v in sharing["errors"].items()}}}


def table(summary: dict, machine: dict, setup: dict) -> str:
    lines = ["| comparison | ratio | goal | met |", "|---|---|---|---|"]
    for c in summary["comparisons"]:
        goal = f">= {c['goal']}x" if c["goal"] else "-"
        met = {True: "yes", False: "**no**", None: "-"}[c["met"]]
        lines.append(f"| {c['what']} | {c['ratio']:.2f}x | {goal} | {met} |")
    lines += ["", "| side (UNet width {width}, {px} px, batch {batch}) | samples/s (median; "
              "range) | val_dice | first epoch s | peak GPU MB |".format(**setup["big"]),
              "|---|---|---|---|---|"]
    for name, s in summary["sides"].items():
        sps = s["samples_per_s"]
        lines.append(f"| {name} | {sps['median']:.1f} ({sps['min']:.1f}-{sps['max']:.1f}, "
                     f"n={sps['n']}) | {s['val_dice']:.3f} | {s['first_epoch_s']:.1f} | "
                     f"{s['peak_mem_mb']:.0f} |")
    lines += ["", "| trainings at once (UNet width {width}, {px} px, batch {batch}) | aggregate "
              "samples/s (median; range) |".format(**setup["small"]), "|---|---|"]
    for count, s in summary["sharing"].items():
        sps = s["aggregate_samples_per_s"]
        lines.append(f"| {count} | {sps['median']:.1f} ({sps['min']:.1f}-{sps['max']:.1f}, "
                     f"n={sps['n']}) |")
    if "precision" in setup:
        p = setup["precision"]
        lines += ["", f"Autocast: ours {p['ours_autocast']}, reference {p['reference_autocast']}; "
                      f"float32 runs with cudnn.allow_tf32={p['cudnn_allow_tf32']}, matmul "
                      f"precision {p['matmul_precision']} (torch's defaults)."]
    lines += ["", f"Machine: {machine_line(machine)}."]
    lines += [f"- FAILED {name}: {error}" for name, error in summary["errors"].items()]
    return "\n".join(lines) + "\n"


# ---- entry points ---------------------------------------------------------------------------
def benchmark(tiny: bool, device: str, work: Path, budget_s: float | None = None) -> dict:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("no CUDA GPU visible to torch: run on the GPU machine, or pass "
                         "--tiny --device cpu to test the code path")
    size = TINY if tiny else FULL
    clock = Clock(budget_s or size.budget_s)
    work.mkdir(parents=True, exist_ok=True)
    processes = min(16, os.cpu_count() or 1)
    big_dir = write_crack_folder(work / "data_big", size.big["images"], size.big["file_px"],
                                 processes=processes)
    small_dir = write_crack_folder(work / "data_small", size.small["images"],
                                   size.small["file_px"], processes=processes)
    big, small = make_spec(size.big, big_dir, device), make_spec(size.small, small_dir, device)
    precision = {"runs": {name: [] for name in size.sides}, "errors": {}}
    sharing = {"runs": {count: [] for count in size.share_counts}, "errors": {}}
    # Round by round across both parts: every comparison gets one measurement before any
    # gets its repeat, so a tight budget costs repeats, not whole figures.
    for round_ in range(max(size.repeats, size.share_repeats)):
        if round_ < size.repeats:
            precision_round(big, work / "precision", size.sides, round_, clock, precision)
        if round_ < size.share_repeats:
            sharing_round(small, work / "sharing", size.share_counts, round_, clock, sharing)
    setup = {name: {"width": s["width"], "px": int(s["file_px"] * 0.5),
                    "batch": s["batch_size"], "images": s["images"], "epochs": s["epochs"]}
             for name, s in (("big", size.big), ("small", size.small))}
    summary = summarise(precision, sharing)
    machine = machine_info()
    if device.startswith("cuda"):
        setup["precision"] = {
            "ours_autocast": "bfloat16" if torch.cuda.is_bf16_supported() else "float16",
            "reference_autocast": "float16 + GradScaler",
            # torch's defaults: float32 convolutions may run in TF32, matmuls do not.
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision()}
    return {"summary": summary, "setup": setup, "machine": machine, "device": device,
            "tiny": tiny, "wall_s": time.time() - clock.start,
            "table": table(summary, machine, setup),
            "raw": {"precision": precision, "sharing": sharing}}


def run(ctx) -> object:
    """The registry's entry (`python -m bench gpu`): tiny mode runs on the CPU."""
    from bench.registry import Outcome

    report = benchmark(ctx.tiny, "cpu" if ctx.tiny else "cuda", ctx.work_dir)
    goals = [c for c in report["summary"]["comparisons"] if c["goal"]]
    if not goals:
        raise BenchError("no comparison could be measured: "
                         + "; ".join(report["summary"]["errors"].values()))
    headline = "; ".join(f"{c['what']}: {c['ratio']:.2f}x" for c in goals)
    met = all(c["met"] for c in goals) if len(goals) == 3 else None  # None: not all measured
    return Outcome(ratio=goals[0]["ratio"], headline=headline, met=met,
                   figures={k: report[k] for k in ("summary", "setup", "device")},
                   notes=[report["table"].split("\n\n")[0].replace("\n", " ")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (tests the code path)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--out", default=os.environ.get("OUT", ""),
                        help="folder for gpu_bench.md/.json (default: $OUT if set)")
    parser.add_argument("--work", default="", help="scratch folder (default: a temp folder)")
    parser.add_argument("--budget-s", type=float, help="stop starting runs after this long")
    args = parser.parse_args(argv)
    import tempfile

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_bench-"))
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    try:
        report = benchmark(args.tiny, args.device, work, args.budget_s)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        if out:  # whoever fetches $OUT learns why there is no table
            (out / "gpu_bench.md").write_text(f"gpu_bench failed: {error}\n")
        return 2
    print(report["table"], end="")
    print(f"({report['wall_s']:.0f} s in all; scratch in {work})")
    if out:
        (out / "gpu_bench.md").write_text(report["table"])
        (out / "gpu_bench.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
