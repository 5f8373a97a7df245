"""Figures the benchmark docs derive from the committed result files (bench/docs.py): the
README's headline rows, and GPU figures a result file holds the parts of but not the whole
(whole-epoch MFU, sharing over the card's busy time). Every number is read from a file; a
figure a file lacks is "missing"."""
from __future__ import annotations

from bench.docs_format import MISSING, pct, table
from bench.gpu_results import GPU_SOURCES


def get(data, *keys):
    """data[k1][k2]..., or None where any step is absent."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def median_of(value):
    """A spread's median, or the plain number an older entry recorded."""
    return value.get("median") if isinstance(value, dict) else value


def spread_text(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return MISSING
    if not isinstance(value, dict):
        return f"{value:.{digits}g}{unit} (one run)"
    text = f"{value['median']:.{digits}g}{unit}"
    if value.get("n", 1) > 1:
        text += f" ({value['min']:.{digits}g}-{value['max']:.{digits}g}, n = {value['n']})"
    else:
        text += " (one run)"
    return text


def ci_text(ratio, ci) -> str:
    if ratio is None:
        return MISSING
    if ratio != ratio:  # nan: neither side reached the target in half the searches
        return "none (neither reaches the target in half the searches)"
    return f"{ratio:.2f}x" + (f" [90 % CI {ci[0]:.2f}-{ci[1]:.2f}]" if ci else "")


def short_machine(machine: dict | None) -> str:
    if not machine:
        return MISSING
    cores = machine.get("usable_cores") or machine.get("cores")
    text = f"{machine.get('cpu', '?')}, {cores} cores"
    return f"{machine['gpu']} ({text})" if machine.get("gpu") else text


# ---- the README's summary ---------------------------------------------------------------------
def summary_rows(sources: dict) -> list[dict]:
    benchmarks = sources["results"]["benchmarks"]
    rows = []

    def row(what: str, name: str, figure: str) -> None:
        entry = benchmarks.get(name) or {}
        rows.append({"what": what, "figure": figure if entry else MISSING,
                     "machine": short_machine(entry.get("machine")),
                     "date": (entry.get("date") or "")[:10] or MISSING,
                     "source": f"[{name}](docs/BENCHMARKS.md#{name})"})

    held = get(benchmarks, "search", "figures", "heldout") or {}
    names = ", ".join(held.get("heldout_table_names") or []) or MISSING

    def held_ratio(base: str, pooled: str) -> str:
        """The goal's figure (geometric mean over tables and concurrencies; 0 when the shipped
        method misses the target on one table, nan when both miss), then each table's."""
        text = ci_text(held.get(pooled), held.get(f"{pooled}_ci90"))
        text += " fewer" if text[0].isdigit() else ""
        tables = held.get("per_table") or {}
        parts = [f"{n} {ci_text(t[base]['ratio'], t[base]['ci90'])}"
                 for n, t in tables.items() if base in t]
        return text + (f" (by table: {'; '.join(parts)})" if parts else "")

    row(f"search, held out ({names}): shipped `{held.get('shipped', '?')}` vs random search, "
        f"trial-epochs to the top-5 % target", "search",
        held_ratio("ratio_vs_random", "ratio_vs_random"))
    row("search, held out: shipped vs random search + ASHA", "search",
        held_ratio("ratio_vs_random_asha", "ratio_vs_random_asha"))
    row("search, development: the method ranked first", "search-dev",
        f"`{get(benchmarks, 'search-dev', 'figures', 'best') or '?'}`")
    modes = get(benchmarks, "modes", "figures", "sweep_s") or {}
    row("quickstart sweep (`make sweep`), wall time, reproducible mode", "modes",
        spread_text(modes.get("reproducible"), " s"))
    row("quickstart sweep, reproducible vs async wall time", "modes",
        f"{get(benchmarks, 'modes', 'ratio') or 0:.2f}x")
    slots = get(benchmarks, "slots", "figures") or {}
    concurrency = get(slots, "sweep", "concurrency")
    row(f"quickstart sweep: slots kept busy of {concurrency}, trials only", "slots",
        spread_text(get(slots, "sweep", "effective_concurrency")))
    row("quickstart sweep: slots kept busy, from the command's start", "slots",
        spread_text(slots.get("whole_sweep_effective_concurrency")))
    seeds = get(slots, "raw_tune", "seeds_per_trial")
    row(f"raw Ray Tune on the same trials (seeds per trial: {seeds or MISSING}, the sweep's: "
        f"{get(slots, 'sweep', 'seeds_per_trial') or MISSING}): slots kept busy, trials only",
        "slots", spread_text(get(slots, "raw_tune", "effective_concurrency")))
    loop = get(benchmarks, "loop", "figures", "samples_per_s") or {}
    if loop:
        row("our training loop vs a Pytorch-UNet-style loop, samples/s", "loop",
            f"{get(benchmarks, 'loop', 'ratio'):.2f}x (ours "
            f"{spread_text(loop.get('ours'))}, reference {spread_text(loop.get('reference'))})")
    rows += gpu_summary(sources.get("gpu", {}))
    return rows


def gpu_summary(gpu: dict) -> list[dict]:
    loop = gpu.get("gpu_loop")
    if not loop:
        return []
    added = next(s["added"] for s in GPU_SOURCES if s["key"] == "gpu_loop").split(", ")[-1]
    train, whole = loop_mfu_ranges(loop)
    machine = f"{loop.get('device', '?')} ({loop.get('cpus', '?')} CPUs)"
    return [{"what": "GPU training loop MFU, full-width UNet, epochs 2 onwards: training part / "
                     "whole epoch (validation and checkpoint in)",
             "figure": f"{train} / {whole}", "machine": machine,
             "date": loop.get("date") or f"{MISSING} (committed {added})",
             "source": "[GPU loop](docs/BENCHMARKS.md#gpu-training-loop-vs-its-step)"}]


# ---- GPU figures --------------------------------------------------------------------------------
def whole_epoch_mfu(row: dict, flops: float, peak: float) -> float | None:
    """MFU over the whole epoch (validation and checkpoint in): the row's own figure, or the
    epoch's training samples x FLOP per image / epoch seconds / peak."""
    if row.get("mfu_whole_epoch") is not None:
        return row["mfu_whole_epoch"]
    samples = row.get("train_samples") or row.get("samples")
    if not samples or not row.get("epoch_seconds") or not peak:
        return None
    return samples * flops / row["epoch_seconds"] / peak


def loop_rows(loop: dict) -> list[dict]:
    flops, peak = loop.get("flops_per_image") or 0.0, loop.get("peak_flops") or 0.0
    rows = []
    for label, variant in (loop.get("variants") or {}).items():
        if "error" in variant:
            rows.append({"variant": label, "epoch": "-", "samples/s": variant["error"][:120]})
        for r in variant.get("epochs") or []:
            rows.append({"variant": label, "epoch": r.get("epoch"),
                         "samples/s": r.get("samples_per_s"),
                         "MFU, training part": r.get("mfu"),
                         "MFU, whole epoch": whole_epoch_mfu(r, flops, peak),
                         "train s": r.get("train_s", r.get("seconds")),
                         "first batch s": r.get("first_batch_s"), "waits s": r.get("wait_s"),
                         "steps s": r.get("step_s"), "epoch s": r.get("epoch_seconds"),
                         "validation s": r.get("val_s"), "checkpoint s": r.get("checkpoint_s")})
    return rows


def percent_range(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return MISSING
    low, high = min(values), max(values)
    return f"{100 * low:.1f} %" if round(100 * low, 1) == round(100 * high, 1) else \
        f"{100 * low:.1f}-{100 * high:.1f} %"


def loop_mfu_ranges(loop: dict) -> tuple[str, str]:
    """Training-part and whole-epoch MFU over the plain loop's steady epochs (2 onwards)."""
    steady = [r for r in loop_rows(loop)
              if r["variant"].startswith("loop") and isinstance(r["epoch"], int) and r["epoch"] > 1]
    return (percent_range([r["MFU, training part"] for r in steady]),
            percent_range([r["MFU, whole epoch"] for r in steady]))


def gpu_derived(key: str, data: dict) -> list[str]:
    if key in ("gpu_loop", "gpu_loop_before"):
        train, whole = loop_mfu_ranges(data)
        rows = [{**r, "MFU, training part": pct(r["MFU, training part"]),
                 "MFU, whole epoch": pct(r["MFU, whole epoch"])} for r in loop_rows(data)]
        source = "the file's `mfu_whole_epoch`" if any(
            "mfu_whole_epoch" in r for v in data.get("variants", {}).values()
            for r in v.get("epochs", [])) else \
            "samples x FLOP per image / `epoch_seconds` / peak (the file predates the field)"
        return [f"- MFU of the plain loop, epochs 2 onwards: training part {train}; whole "
                f"epoch {whole} (whole epoch: {source})", ""] + table(rows)
    if key == "gpu_sweep":
        return sharing_lines(get(data, "phases", "share") or {})
    return []


def sharing_lines(share: dict) -> list[str]:
    counts = share.get("counts") or {}
    one = get(counts, "1", "per_gpu")
    if not one:
        return []
    lines = []
    for n in sorted((c for c in counts if c != "1"), key=int):
        busy = get(counts, n, "per_gpu")
        if not busy:
            continue
        by_busy = busy[0]["aggregate_samples_per_s"] / one[0]["aggregate_samples_per_s"]
        lines.append(f"- {n} trials sharing the card vs 1: {by_busy:.2f}x by aggregate "
                     f"samples over the card's busy time; "
                     f"{get(share, 'ratios', f'{n} vs 1') or 0:.2f}x by the sum of each "
                     f"trial's own steady rate (counts the trials as if they overlapped fully)")
    return lines
