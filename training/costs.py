"""What a model costs to run, measured by the training loop each epoch on the trial's own device
(docs/COSTS.md): parameters and FLOPs (counted: load-independent), inference latency at batch 1
and per image at the eval batch size, peak memory and the machine's load (sampled: they move
with the load). The measurement draws no random numbers and leaves every module's train/eval
mode as it found it, so a seeded run learns exactly what it would without it. The keys' names:
training/cost_keys.py."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import statistics
import time
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Batch-1 latency: untimed calls first (a new input shape makes oneDNN/cuDNN build their
# kernels: the run's first call took 3x a warm one here), then timed ones until the budget is
# spent, but at least MIN_TIMED (a spread needs several) and at most MAX_TIMED.
WARMUP_FIRST = 1  # the run's first measurement: the call that counts the FLOPs runs the kernels
WARMUP = 0  # later epochs: the kernels exist, and the median absorbs one cold-cache call
MIN_TIMED, MAX_TIMED = 3, 7
# The timed calls' share of the epoch so far: on experiments/smoke.yaml's model (0.7-1.3 s
# epochs on 2 cores) a batch-1 forward takes ~3.5 ms, so the minimum of 3 is spent there and
# the full 7 wherever an epoch is long (`python -m bench costs` measures the overhead).
BUDGET = 0.01


class CostMeter:
    """One per run: counts parameters and FLOPs once, then ``measure``s after each epoch's
    validation. ``side`` is the training image (crop) size; the input is a fixed ramp, not a
    random draw, so no RNG moves."""

    def __init__(self, model: nn.Module, channels: int, side: tuple[int, int],
                 device: torch.device, amp_dtype: torch.dtype | None,
                 memory_format: torch.memory_format) -> None:
        self.model, self.device, self.amp_dtype = model, device, amp_dtype
        count = channels * side[0] * side[1]
        self.example = torch.linspace(0, 1, count, device=device).reshape(
            1, channels, *side).contiguous(memory_format=memory_format)
        self.params = count_params(model)
        self.flops: int | None = None  # counted by the first measurement's first warm-up call
        self.memory = PeakMemory(device)

    def start_epoch(self) -> None:
        self.memory.reset()

    def measure(self, timer: ForwardTimer, budget_s: float) -> dict:
        """This epoch's costs; ``timer`` holds the validation's forward passes (the eval batch
        size: timing them costs no extra forward). Spends about ``budget_s`` on batch-1 calls."""
        peak_mb = self.memory.peak_mb()  # before the extra forwards below
        times = self.time_batch_one(budget_s)
        return {"params": self.params, "flops": self.flops,
                "latency_ms": statistics.median(times) * 1e3,
                "latency_eval_ms": timer.per_image_ms(),
                "latency_ms_spread": spread(times), "peak_mem_mb": peak_mb,
                "cpu_load": cpu_load()}

    def time_batch_one(self, budget_s: float) -> list[float]:
        """Seconds of each timed batch-1 forward, in eval mode without autograd (what
        inference runs), under the loop's autocast. The eager model even when the loop
        compiles: a new batch size would make torch.compile recompile (seconds to minutes)."""
        began = time.perf_counter()
        warmup = WARMUP_FIRST if self.flops is None else WARMUP
        times: list[float] = []
        with in_eval_mode(self.model), torch.inference_mode(), self.autocast():
            if self.flops is None:
                self.flops = count_flops(self.model, self.example)
                warmup -= 1
            for _ in range(warmup):
                self.model(self.example)
            while len(times) < MAX_TIMED and (len(times) < MIN_TIMED
                                              or time.perf_counter() - began < budget_s):
                times.append(self.timed_forward())
        return times

    def timed_forward(self) -> float:
        cuda = self.device.type == "cuda"
        if cuda:  # kernels run asynchronously: wait for earlier work, then for this call's
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.model(self.example)
        if cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)


class ForwardTimer:
    """Times the validation's forward passes, batch by batch. CPU: the clock. CUDA: events on
    the stream, so validation keeps running without a host sync per batch; they are read once
    validation has synchronised (its metrics come back to the host)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.spans: list[tuple[int, object, object]] = []  # (images, start, end)

    @contextlib.contextmanager
    def batch(self, images: int) -> Iterator[None]:
        if self.cuda:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            yield
            end.record()
        else:
            start = time.perf_counter()
            yield
            end = time.perf_counter()
        self.spans.append((images, start, end))

    def per_image_ms(self) -> float:
        """Median over the full batches of milliseconds per image (a last, smaller batch runs
        at another size); NaN before any batch."""
        if not self.spans:
            return math.nan
        size = max(images for images, _, _ in self.spans)
        per_image = []
        for images, start, end in self.spans:
            if images == size:
                if self.cuda:
                    end.synchronize()
                    ms = start.elapsed_time(end)
                else:
                    ms = (end - start) * 1e3
                per_image.append(ms / images)
        return statistics.median(per_image)


class PeakMemory:
    """The epoch's peak memory in MiB. CUDA: torch.cuda.max_memory_allocated (this process's
    tensors). CPU: how far the resident set grew over the epoch: its peak (VmHWM in
    /proc/self/status) less its size as the epoch began. VmHWM rather than getrusage's
    ru_maxrss because Linux lets a process reset VmHWM (clear_refs), so each epoch gets its own
    peak even in a Ray worker that ran other trials; ru_maxrss only ever grows. The heap is
    trimmed first: glibc keeps freed memory resident, and without the trim every epoch after
    the first grew by 5-6 MB against 57 MB for the first (smoke-sized UNet, batch 8; 18 MB
    with it). DataLoader worker processes are not counted. NaN where the peak cannot be
    reset."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.start_kb: int | None = None

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        trim_heap()
        self.start_kb = status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # 5: reset the peak resident set, nothing else
        except OSError:  # not Linux, or not allowed: VmHWM would be the process's lifetime peak
            self.start_kb = None

    def peak_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = status_kb("VmHWM")
        if peak is None or self.start_kb is None:
            return math.nan
        return max(peak - self.start_kb, 0) / 1024


@functools.cache
def libc_trim():
    """glibc's malloc_trim, or None (another C library). CDLL(None): the symbols this process
    already has, without ctypes.util.find_library's search (it starts ldconfig)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def trim_heap() -> None:
    """Hand the heap's free pages back to the system (1-9 ms measured here)."""
    if (trim := libc_trim()) is not None:
        trim(0)


def status_kb(field: str) -> int | None:
    """A kB figure of /proc/self/status (Linux); None where there is none."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def count_params(model: nn.Module) -> int:
    """Trainable parameters, exactly."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``example`` as torch.utils.flop_counter counts them: 2 per
    multiply-accumulate of the convolutions (transposed ones too) and matrix products; norms,
    activations and poolings are not counted. A function of the architecture and input shape
    alone. Runs one forward: call it inside the caller's no-grad, eval-mode context."""
    with FlopCounterMode(display=False) as counter:
        model(example)
    return int(counter.get_total_flops())


def spread(times: list[float]) -> float:
    """The timed repeats' noise: (p90 - p10) / median, the middle 80 %'s width relative to the
    median (quantiles interpolated between the repeats); 0 for a single repeat."""
    if len(times) < 2:
        return 0.0
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return (deciles[-1] - deciles[0]) / statistics.median(times)


def cpu_load() -> float:
    """The 1-minute load average per CPU (1.0: every core busy), so a report can say a latency
    was measured under load. Divided by all the machine's CPUs: the load average counts the
    whole machine's runnable tasks, not this process's share of it."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        return math.nan


@contextlib.contextmanager
def in_eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` for the block, then every module's own mode back (a frozen BatchNorm in
    a training model stays frozen): dropout draws nothing and BatchNorm's statistics stay."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
