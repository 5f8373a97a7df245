"""The Markdown page of tools/gpu/sweep.py's result (pure: a dict in, text out)."""
from __future__ import annotations

from bench.machine import machine_line

MFU_GOAL = 0.35
SHARE_GOAL = 2.5


def num(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mfu_lines(phases: dict) -> list[str]:
    heads = [p for name, p in phases.items() if name.startswith("mfu_") and "variants" in p]
    if not heads:
        return []
    head = heads[0]
    flops = head.get("flops_per_image") or 0
    peak = head.get("peak_flops")
    lines = ["## Model FLOP utilisation (UNet width {width}, {px} px)".format(**head), "",
             f"{flops / 1e9:.1f} GFLOP per image, forward + backward (torch.utils.flop_counter); "
             f"peak {num(peak / 1e12 if peak else None, 0)} TFLOP/s dense bf16 ({head['device']}); "
             f"goal MFU >= {MFU_GOAL:.0%}.", "",
             "| variant | samples/s | TFLOP/s | MFU | peak GPU MB | note |",
             "|---|---|---|---|---|---|"]
    for p in heads:
        for label, v in p["variants"].items():
            mfu = f"{v['mfu']:.1%}" if v.get("mfu") is not None else "-"
            lines.append(f"| {label} | {num(v.get('samples_per_s'))} | {num(v.get('tflops'))} | "
                         f"{mfu} | {num(v.get('peak_mem_mb'), 0)} | {v.get('error', '')} |")
        lines += [f"- skipped {s}" for s in p.get("skipped", [])]
    return lines + [""]


def sweep_lines(sweep: dict) -> list[str]:
    if "trials" not in sweep:
        return ["## Sweep with an out-of-memory trial", "", f"no result: {sweep.get('error')}", ""]
    counts = ", ".join(f"{n} {k}" for k, n in (sweep.get("counts") or {}).items() if n)
    lines = ["## Sweep with an out-of-memory trial", "",
             f"{len(sweep['trials'])} trials in {num(sweep.get('wall_s'), 0)} s ({counts}); "
             f"OOM batch {sweep.get('oom_batch')}"
             + (" (injected: CPU run)" if sweep.get("injected_oom") else "")
             + f"; search seed {sweep.get('search_seed')} (predicted batch sizes "
             f"{sweep.get('predicted_batch_sizes')}); best val_dice "
             f"{num(sweep.get('best_val_dice'), 4)}; W&B offline runs: "
             f"{sweep.get('wandb_offline_runs')}.", "",
             "| trial | batch | status | Optuna | epochs | samples/s | GPU | peak MB | reason |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in sweep["trials"]:
        lines.append(f"| {t['trial']} | {t['params'].get('batch_size')} | {t['status']} | "
                     f"{t['optuna']} | {t['epochs']} | {num(t['samples_per_s'])} | "
                     f"{t['gpu_ids']} | {num(t['gpu_peak_mem_mb'], 0)} | {t['reason'][:120]} |")
    lines += ["", "| GPU | trials | most at once | aggregate samples/s |", "|---|---|---|---|"]
    lines += [f"| {g['gpu']} | {g['trials']} | {g['most at once']} | "
              f"{num(g['aggregate_samples_per_s'])} |" for g in sweep.get("per_gpu", [])]
    return lines + [""]


def share_lines(share: dict) -> list[str]:
    if "counts" not in share:
        return ["## Trials sharing one GPU", "", f"no result: {share.get('error')}", ""]
    lines = ["## Trials sharing one GPU (UNet width 16, 128 px, batch 8, gpus 0.25 each)", "",
             "| trials at once | aggregate samples/s (steady: epochs 2..) | end to end | "
             "per trial |", "|---|---|---|---|"]
    for count, c in sorted(share["counts"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {count} | {num(c['aggregate_samples_per_s'])} | "
                     f"{num(c['end_to_end_samples_per_s'])} | "
                     f"{', '.join(num(v) for v in c['per_trial_samples_per_s'])} |")
    for what, ratio in share.get("ratios", {}).items():
        goal = f" (goal >= {SHARE_GOAL}x)" if what.startswith("4") else ""
        lines.append(f"\n{what}: {ratio:.2f}x{goal}")
    lines += [f"- skipped {s}" for s in share.get("skipped", [])]
    return lines + [""]


def markdown(result: dict) -> str:
    phases = result.get("phases", {})
    lines = ["# GPU sweep check (tools/gpu/sweep.py)", "",
             f"Machine: {machine_line(result.get('machine') or {})}.",
             f"Budget {num(result.get('budget_s'), 0)} s; wall {num(result.get('wall_s'), 0)} s.",
             ""]
    lines += mfu_lines(phases)
    if "sweep" in phases:
        lines += sweep_lines(phases["sweep"])
    if "share" in phases:
        lines += share_lines(phases["share"])
    if "quickstart" in phases:
        q = phases["quickstart"]
        lines += ["## Quickstart sweep on the GPU", "",
                  f"{num(q.get('wall_s'), 0)} s, {q.get('counts')}, best val_dice "
                  f"{num(q.get('best_val_dice'), 4)} ({q.get('overrides')})", ""]
    lines += ["## Phases", "", "| phase | exit | seconds | timed out |", "|---|---|---|---|"]
    lines += [f"| {name} | {p.get('exit_code')} | {p.get('seconds')} | {p.get('timed_out')} |"
              for name, p in phases.items()]
    lines += [f"- skipped {name}: {why}" for name, why in result.get("skipped", {}).items()]
    return "\n".join(lines) + "\n"
