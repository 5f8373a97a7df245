"""Model FLOP utilisation of one full-width training (UNet width 64, 256 px) on a GPU.

FLOPs per image: torch.utils.flop_counter over one forward + backward of our loss (matmul and
convolution FLOPs, 2 per multiply-add, the usual MFU convention). MFU = samples/s x FLOPs per
image / the card's dense bf16 peak. Two kinds of figure:
- `step`: training.loop.train_step (our step: bf16 autocast, channels_last, RMSprop foreach,
  grad clipping) on a batch that stays on the GPU: the ceiling the loop can reach;
- `loop`: training.loop.train itself on the synthetic set (data loading, validation and the
  checkpoint included): what a trial gets.
Each variant (determinism on/off, torch.compile on/off, batch size) is measured in this one
process; a variant that fails (out of memory, a compile error) is recorded and the next runs.

    python -m bench.gpu_mfu --out mfu.json [--budget-s 120] [--only eager|compile|loop]
    python -m bench.gpu_mfu --tiny --device cpu   # the code path (the tests)
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's data sheets. The H200 is
# the H100's chip with more and faster memory: the same peak.
PEAKS = [("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
         ("GH200", 989e12), ("A100", 312e12)]
# (name, compile, deterministic, batch): the order is the priority when time runs short.
STEP_VARIANTS = {
    "eager": [("eager det b16", False, True, 16), ("eager nondet b16", False, False, 16),
              ("eager det b64", False, True, 64), ("eager nondet b64", False, False, 64)],
    "compile": [("compiled nondet b64", True, False, 64), ("compiled det b64", True, True, 64),
                ("compiled nondet b128", True, False, 128)],
}
LOOP_VARIANTS = [("loop eager det b16", False, True, 16), ("loop compiled det b64", True, True, 64)]


def peak_flops(device_name: str) -> float | None:
    for key, peak in PEAKS:
        if key in device_name:
            return peak
    return None


def setup(device, deterministic: bool) -> None:
    from training.determinism import configure_determinism, quiet_determinism_warnings

    configure_determinism(device, deterministic)
    quiet_determinism_warnings()


def build(width: int, device, compile_: bool):
    import torch

    from models import create_model
    from training.config import TrainConfig
    from training.loop import compile_model, make_optimizer

    model = create_model("unet", n_channels=3, n_classes=2, width=width)
    model = model.to(device=device, memory_format=torch.channels_last)
    optimizer = make_optimizer(TrainConfig(), model)  # rmsprop, foreach: the loop's default
    return model, (compile_model(model) if compile_ else model), optimizer


def batch(size: int, px: int, device):
    import torch

    images = torch.rand(size, 3, px, px, device=device).contiguous(
        memory_format=torch.channels_last)
    return images, torch.randint(0, 2, (size, px, px), device=device)


def flops_per_image(width: int, px: int, device, amp_dtype) -> float:
    """Forward + backward FLOPs of one image through our loss, counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from training.losses import segmentation_loss

    model, _, _ = build(width, device, False)
    images, masks = batch(2, px, device)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            loss = segmentation_loss(model(images), masks)
        loss.backward()
    return counter.get_total_flops() / 2


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(width: int, px: int, size: int, device, amp_dtype, compile_: bool,
              deterministic: bool, seconds: float) -> dict:
    import torch

    from training.loop import train_step

    setup(device, deterministic)
    model, net, optimizer = build(width, device, compile_)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    images, masks = batch(size, px, device)
    began = time.perf_counter()
    for _ in range(3):  # warm-up: cuDNN plans, the allocator, and the compile
        train_step(net, images, masks, optimizer, scaler, 1.0, amp_dtype)
    sync(device)
    warmup_s = time.perf_counter() - began
    steps, start = 0, time.perf_counter()
    while True:  # whole rounds of 5 steps until `seconds` have passed
        for _ in range(5):
            train_step(net, images, masks, optimizer, scaler, 1.0, amp_dtype)
        steps += 5
        sync(device)
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    del model, net, optimizer
    return {"samples_per_s": steps * size / elapsed, "steps": steps, "warmup_s": warmup_s,
            "peak_mem_mb": peak}


@functools.lru_cache(maxsize=1)
def synthetic(images: int, px: int):
    """The synthetic crack set, decoded once for every loop variant."""
    from data_pipeline import load_data

    return load_data("", synthetic_images=images, synthetic_size=px)


def time_loop(width: int, px: int, size: int, device, compile_: bool, deterministic: bool,
              images: int, work: Path) -> dict:
    from training.config import TrainConfig
    from training.loop import train

    config = TrainConfig(model="unet", width=width, synthetic_images=images,
                         synthetic_size=px, batch_size=size, eval_batch_size=size, epochs=2,
                         device=str(device), amp=True, deterministic=deterministic,
                         compile=compile_, num_workers=4 if device.type == "cuda" else 0,
                         keep_checkpoints=1, out_dir=str(work / f"loop_{compile_}_{size}"))
    result = train(config, synthetic(images, px))
    last = result.history[-1]  # epoch 2: the first holds the warm-up (and the compile)
    return {"samples_per_s": last["samples_per_s"], "first_epoch_s":
            result.history[0]["epoch_seconds"], "val_dice": last["val_dice"],
            "peak_mem_mb": last.get("gpu_peak_mem_mb")}


def measure(only: list[str], device_name: str, tiny: bool, budget_s: float, work: Path,
            emit) -> dict:
    import torch

    from training.config import TrainConfig
    from training.determinism import resolve_device
    from training.loop import autocast_dtype

    device = resolve_device(device_name)
    width, px = (4, 32) if tiny else (64, 256)
    amp_dtype = autocast_dtype(TrainConfig(amp=True), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(name)
    flops = flops_per_image(width, px, device, amp_dtype)
    head = {"device": name, "width": width, "px": px, "flops_per_image": flops,
            "peak_flops": peak, "autocast": str(amp_dtype), "variants": {}, "skipped": []}
    emit(head)
    start, longest = time.time(), 0.0
    plan = [(v, "step") for kind in only if kind in STEP_VARIANTS for v in STEP_VARIANTS[kind]]
    plan += [(v, "loop") for v in LOOP_VARIANTS] if "loop" in only else []
    for (label, compile_, deterministic, size), kind in plan:
        size = 2 if tiny else size
        left = budget_s - (time.time() - start)
        if left < longest * 1.2 or left < 5:
            head["skipped"].append(f"{label}: {left:.0f} s left of the budget")
            continue
        began = time.time()
        try:
            if kind == "step":
                figures = time_step(width, px, size, device, amp_dtype, compile_, deterministic,
                                    0.2 if tiny else 4.0)
            else:
                figures = time_loop(width, px, size, device, compile_, deterministic,
                                    16 if tiny else 800, work)
        except Exception as error:  # noqa: BLE001 - out of memory, compile error: next variant
            figures = {"error": f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
        figures.update(kind=kind, compile=compile_, deterministic=deterministic, batch=size,
                       seconds=time.time() - began)
        if "samples_per_s" in figures:
            figures["tflops"] = figures["samples_per_s"] * flops / 1e12
            figures["mfu"] = figures["samples_per_s"] * flops / peak if peak else None
        longest = max(longest, time.time() - began)
        head["variants"][label] = figures
        emit(head)
    emit(head)  # with the skipped variants named
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_mfu",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file, rewritten per variant")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--only", action="append", choices=["eager", "compile", "loop"])
    args = parser.parse_args(argv)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def emit(state: dict) -> None:  # a kill mid-way keeps what was measured
        args.out.write_text(json.dumps(state, indent=1))

    with tempfile.TemporaryDirectory(prefix="gpu_mfu-") as work:
        measure(args.only or ["eager", "compile", "loop"], args.device, args.tiny,
                args.budget_s, Path(work), emit)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
