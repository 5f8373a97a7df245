"""The machine a figure was measured on: recorded with every figure, since a ratio from a
2-core VM and one from a workstation are different facts."""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path


def machine_info() -> dict:
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # Versions from package metadata: importing ray here would break gpu_bench's promise.
        "ray": package_version("ray"),
        "optuna": package_version("optuna"),
        "wandb": package_version("wandb"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_line(info: dict) -> str:
    """One line for a table caption."""
    parts = [f"{info.get('cpu')}, {info.get('usable_cores') or info.get('cores')} cores"]
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']} (CUDA {info.get('cuda')})")
    if info.get("memory_gb"):
        parts.append(f"{info['memory_gb']} GB RAM")
    parts.append(f"torch {info.get('torch')}")
    for name in ("ray", "optuna", "wandb"):
        if info.get(name):
            parts.append(f"{name} {info[name]}")
    parts.append(f"Python {info.get('python')}")
    return ", ".join(parts)
