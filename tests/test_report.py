"""The compare-runs report on run directories written in the run-directory contract's format
(docs/RUN_LAYOUT.md): a full 12-trial sweep and the degenerate runs a user will meet."""
from __future__ import annotations

import base64
import io
import json
import math
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from sweep.__main__ import main
from sweep.report.build import write_report
from sweep.report.load import load_run
from sweep.report.stats import confirm_groups, edge_warnings, interval95, seed_groups, verdict

SPACE = {"lr": {"loguniform": [1.0e-4, 1.0e-2]}, "batch_size": {"choice": [2, 4, 8]},
         "num_workers": {"choice": [0, 1]}, "seed": {"int": [0, 9999]}}
MAX_EPOCHS = 4


# ---- writing run directories in the contract's format ------------------------------------

def dice_for(config: dict, epoch: int) -> float:
    """A smooth response: best near lr = 3e-3, smaller batches a little better, seed noise."""
    quality = 0.8 - 0.08 * (math.log10(config["lr"]) - math.log10(3e-3)) ** 2
    quality -= 0.01 * math.log2(config["batch_size"])
    noise = np.random.default_rng(config["seed"]).normal(0, 0.005)
    return quality * (1 - 0.5 ** epoch) + noise


def trial_rows(trial_id: str, config: dict, epochs: int, drop: tuple = ()) -> list[dict]:
    rows, total = [], 0.0
    for epoch in range(1, epochs + 1):
        dice = dice_for(config, epoch)
        seconds = 2.0 + 4.0 / config["batch_size"] - 0.5 * config["num_workers"]
        total += seconds
        metrics = {"epoch": epoch, "train_loss": 1 - dice + 0.05, "val_loss": 1 - dice,
                   "val_dice": dice, "val_iou": dice / (2 - dice), "lr": config["lr"],
                   "epoch_seconds": seconds, "samples_per_s": 144 / seconds}
        for key in drop:
            metrics.pop(key)
        rows.append({**metrics, "done": False, "training_iteration": epoch,
                     "trial_id": trial_id, "time_this_iter_s": seconds, "time_total_s": total,
                     "config": config, "checkpoint_dir_name": f"checkpoint_{epoch - 1:06d}"})
    return rows


def write_run(root: Path, trials: list[dict], name: str = "toy", study: bool = True,
              status: bool = True, experiment: bool = True, confirm: dict | None = None,
              space: dict = SPACE, model: str = "unet") -> Path:
    """trials: dicts of id, config, epochs, status, reason and optionally drop (metric keys)
    or no_results (a trial that died before its first report)."""
    run = root / name
    (run / "tune").mkdir(parents=True)
    if experiment:
        (run / "experiment.yaml").write_text(yaml.safe_dump(
            {"name": name, "train": {"model": model, "width": 8}, "space": space,
             "scheduler": {"max_epochs": MAX_EPOCHS, "grace_period": 1,
                           "reduction_factor": 2}}, sort_keys=False))
    statuses = {}
    for trial in trials:
        config = trial["config"]
        folder = run / "tune" / trial["id"]  # sweep/search.py's trial_dirname
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config, indent=2))
        if not trial.get("no_results"):
            rows = trial_rows(trial["id"], config, trial["epochs"], trial.get("drop", ()))
            (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        statuses[trial["id"]] = {"status": trial["status"], "reason": trial.get("reason", ""),
                                 "epochs": trial["epochs"], "config": config}
    if status:
        (run / "trial_status.json").write_text(json.dumps(statuses, indent=2))
    if study:
        write_study(run / "study.journal", name, trials)
    if confirm is not None:
        (run / "confirm.json").write_text(json.dumps(confirm))
    return run


def write_study(journal: Path, name: str, trials: list[dict]) -> None:
    """A real Optuna journal, as OptunaSearch persists it."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    distributions = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                     "batch_size": optuna.distributions.CategoricalDistribution([2, 4, 8]),
                     "num_workers": optuna.distributions.CategoricalDistribution([0, 1]),
                     "seed": optuna.distributions.IntDistribution(0, 9999)}
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
    for trial in trials:
        state = states.get(trial["status"], TrialState.FAIL)
        value = dice_for(trial["config"], trial["epochs"]) if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(
            params=trial["config"], distributions=distributions, value=value, state=state))


def config(lr: float, batch_size: int = 4, num_workers: int = 0, seed: int = 1) -> dict:
    return {"lr": lr, "batch_size": batch_size, "num_workers": num_workers, "seed": seed}


def twelve_trials() -> list[dict]:
    """A sweep as quickstart's would look: complete, ASHA-pruned, one OOM, one crash."""
    lrs = [3e-3, 2e-3, 5e-3, 3e-3, 7e-3, 4e-4, 2e-4, 1.5e-4, 9e-3, 6e-4, 1e-3, 3e-3]
    trials = []
    for i, lr in enumerate(lrs):
        trials.append({"id": f"a{i:07d}", "status": "complete", "epochs": MAX_EPOCHS,
                       "config": config(lr, [2, 4, 8][i % 3], i % 2, seed=100 + i)})
    for i in (5, 6, 7):
        trials[i].update(status="pruned", epochs=1 + i % 2)
    trials[9].update(status="infeasible", epochs=0, no_results=True,
                     reason="out of memory at epoch 1 (batch_size 8)")
    trials[8].update(status="failed", epochs=2,
                     reason="RuntimeError: loader crashed (3 retries)")
    return trials


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("full"), twelve_trials())
    started = time.perf_counter()
    paths = write_report([run])
    return run, paths, time.perf_counter() - started


# ---- reading report.html --------------------------------------------------------------------

class ReportParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.headings, self.links, self.scripts = 0, [], [], [], 0
        self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self.scripts += 1
        elif tag in ("link", "a") and "href" in attrs:
            self.links.append(attrs["href"])
        elif tag in ("h1", "h2"):
            self._heading = ""

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data

    def handle_endtag(self, tag):
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None


def parse(html_path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(html_path.read_text(encoding="utf-8"))
    return parser


def decode_png(src: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):])))
    image.load()  # decodes every pixel: a truncated PNG fails here
    return image


# ---- the full sweep -------------------------------------------------------------------------

def test_full_report_has_every_section_table_and_decodable_image(full_report):
    run, paths, seconds = full_report
    assert paths == {"html": run / "report.html", "md": run / "report.md",
                     "csv": run / "trials.csv"}
    report = parse(paths["html"])
    for heading in ("Summary", "Leaderboard", "Seed-aware ranking", "Learning curves",
                    "val_dice against each searched parameter", "Parameter importance",
                    "Parallel coordinates", "Throughput", "Trial outcomes"):
        assert heading in report.headings
    # leaderboard, why-trials-stopped, seed groups, outcome shares
    assert report.tables == 4
    alts = [image["alt"] for image in report.images]
    assert alts == ["learning curves of the top trials", "val_dice against each searched parameter",
                    "parameter importance", "parallel coordinates of the searched parameters",
                    "throughput against num_workers and batch_size", "trial outcomes"]
    for image in report.images:
        width, height = decode_png(image["src"]).size
        assert width > 300 and height > 150
    # self-contained: no script, no link leaving the page
    assert report.scripts == 0
    assert all(href.startswith("#") for href in report.links)
    assert seconds < 20, f"report took {seconds:.1f} s"


def test_full_report_leaderboard_and_csv(full_report):
    run, paths, _ = full_report
    trials = pd.read_csv(paths["csv"])
    assert len(trials) == 12
    assert trials.status.value_counts().to_dict() == {"complete": 7, "pruned": 3,
                                                      "infeasible": 1, "failed": 1}
    # sorted by best val_dice over each trial's epochs, as the fixture's data says
    best = {t["id"]: max(dice_for(t["config"], e) for e in range(1, t["epochs"] + 1))
            for t in twelve_trials() if t["epochs"]}
    assert trials.best_val_dice.dropna().is_monotonic_decreasing
    assert trials.trial_id.iloc[0] == max(best, key=best.get)
    assert trials.best_val_dice.iloc[0] == pytest.approx(max(best.values()))
    infeasible = trials[trials.status == "infeasible"].iloc[0]
    assert infeasible.epochs == 0 and math.isnan(infeasible.best_val_dice)
    assert "out of memory" in infeasible.reason
    assert {"config/lr", "config/batch_size", "config/seed"} <= set(trials.columns)
    markdown = paths["md"].read_text()
    for trial_id in trials.trial_id:
        assert f"| {trial_id} |" in markdown
    assert "RuntimeError: loader crashed" in markdown


def test_full_report_says_what_matters(full_report):
    _, paths, _ = full_report
    markdown = paths["md"].read_text()
    assert "num_workers` changes speed only" in markdown
    assert "batch_size` changes results" in markdown
    assert "PedAnovaImportanceEvaluator" in markdown
    assert "python -m sweep confirm" in markdown  # no confirm.json yet
    assert "ran out of memory" in markdown and "failed" in markdown
    # two trials share lr=3e-3, batch_size=2 (seeds 100, 103; num_workers 0 and 1): one group
    assert "lr=0.003, batch_size=2 | 2 |" in markdown


# ---- statistics -----------------------------------------------------------------------------

def test_interval95_is_students_t():
    low, high = interval95([0.80, 0.81, 0.82])
    half = 4.302653 * 0.01 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n)
    assert (low, high) == pytest.approx((0.81 - half, 0.81 + half), abs=1e-6)
    assert all(math.isnan(v) for v in interval95([0.8]))


def groups_of(scores: dict[str, list[float]]) -> pd.DataFrame:
    rows = [{"configuration": name, "n": len(v), "mean": float(np.mean(v)), "scores": v}
            for name, v in scores.items()]
    return pd.DataFrame(rows).sort_values("mean", ascending=False, ignore_index=True)


def test_verdict_names_welch_and_separates_signal_from_noise():
    clear = verdict(groups_of({"A": [0.80, 0.81, 0.82], "B": [0.70, 0.71, 0.72]}), "runs")
    assert "#1 beats #2 beyond seed noise" in clear and "Welch's t-test" in clear
    noisy = verdict(groups_of({"A": [0.80, 0.70, 0.77], "B": [0.76, 0.74, 0.73]}), "runs")
    assert "within seed noise" in noisy
    single = verdict(groups_of({"A": [0.8], "B": [0.7]}), "runs")
    assert "cannot tell" in single and "at least 2 seeds" in single


def test_confirm_runs_are_the_primary_evidence(tmp_path):
    confirm = {"epochs": MAX_EPOCHS, "configs": [
        {"config": {"batch_size": 2, "lr": 3e-3, "num_workers": 0}, "seeds": [1, 2, 3],
         "val_dice": [0.79, 0.80, 0.81], "mean": 0.80, "std": 0.01, "n": 3,
         "source_trial": "a0000000"},
        {"config": {"lr": 2e-3, "batch_size": 4, "num_workers": 1}, "seeds": [1, 2, 3],
         "val_dice": [0.70, 0.71, 0.72], "mean": 0.71, "std": 0.01, "n": 3,
         "source_trial": "a0000001"}]}
    run = write_run(tmp_path, twelve_trials(), confirm=confirm)
    groups = confirm_groups(load_run(run))
    # num_workers is not part of a configuration: it cannot change results
    assert list(groups.configuration) == ["lr=0.003, batch_size=2", "lr=0.002, batch_size=4"]
    markdown = Path(write_report([run])["md"]).read_text()
    assert "Primary evidence: confirm runs" in markdown
    assert "#1 beats #2 beyond seed noise" in markdown
    assert "python -m sweep confirm" not in markdown.split("## Leaderboard")[0]


def test_edge_warning_when_best_lr_sits_at_the_top_of_the_range(tmp_path):
    # dice_for peaks at lr = 3e-3, beyond this space's upper bound of 1e-3
    space = {**SPACE, "lr": {"loguniform": [1.0e-5, 1.0e-3]}}
    trials = [{"id": f"e{i}", "status": "complete", "epochs": MAX_EPOCHS,
               "config": config(lr, seed=i)}
              for i, lr in enumerate([1e-5, 3e-5, 1e-4, 7e-4, 8e-4, 1e-3])]
    run = write_run(tmp_path, trials, space=space, study=False)
    warnings = edge_warnings(load_run(run))
    assert [(w.name, w.side) for w in warnings] == [("lr", "upper")]
    assert "log float in [1e-05, 0.001]" in warnings[0].message
    markdown = write_report([run])["md"].read_text()
    assert "**Warning:** The best lr values" in markdown
    assert "Widen the `lr` range on its upper side" in markdown
    # the full sweep's best lr values sit mid-range: no warning
    assert edge_warnings(load_run(write_run(tmp_path / "mid", twelve_trials()))) == []


def test_seed_groups_drop_seed_and_num_workers(tmp_path):
    trials = [{"id": f"s{i}", "status": "complete", "epochs": MAX_EPOCHS,
               "config": config(3e-3, 4, num_workers=i % 2, seed=i)} for i in range(3)]
    groups = seed_groups(load_run(write_run(tmp_path, trials)))
    assert len(groups) == 1 and groups.n.iloc[0] == 3
    assert groups.configuration.iloc[0] == "lr=0.003, batch_size=4"


# ---- degenerate runs: a report that says what is missing --------------------------------------

def report_text(run: Path) -> str:
    paths = write_report([run])
    parsed = parse(paths["html"])
    for image in parsed.images:
        decode_png(image["src"])
    return paths["md"].read_text()


def test_single_trial(tmp_path):
    text = report_text(write_run(tmp_path, [{"id": "only", "status": "complete",
                                             "epochs": MAX_EPOCHS, "config": config(3e-3)}]))
    assert "1 trials (1 complete)" in text
    assert "Only one configuration" in text
    assert "at least 2 complete trials" in text  # no importance from one trial


def test_all_trials_pruned(tmp_path):
    trials = [{"id": f"p{i}", "status": "pruned", "epochs": 1, "config": config(lr, seed=i)}
              for i, lr in enumerate([1e-3, 2e-3, 4e-3])]
    text = report_text(write_run(tmp_path, trials))
    assert "3 trials (3 pruned)" in text
    assert "No complete trials to rank" in text
    assert "No complete trial with a val_dice" in text
    assert "it has 0" in text  # importance: no complete trial in the study


def test_failed_trials_without_results(tmp_path):
    trials = [{"id": f"f{i}", "status": "failed", "epochs": 0, "no_results": True,
               "reason": "ImportError: no module named foo", "config": config(1e-3, seed=i)}
              for i in range(2)]
    text = report_text(write_run(tmp_path, trials))
    assert "2 trials (2 failed); none reported a val_dice" in text
    assert "2 of 2 trial(s) reported no metrics (2 failed)" in text
    assert "No per-epoch metrics to plot" in text
    assert "ImportError: no module named foo" in text


def test_gpu_memory_column_only_for_cuda_trials(tmp_path):
    run = write_run(tmp_path, [{"id": "g0", "status": "complete", "epochs": 2,
                                "config": config(3e-3)}])
    assert "GPU peak MB" not in report_text(run)
    result = run / "tune" / "g0" / "result.json"
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    for row, megabytes in zip(rows, (812.5, 1024.0)):
        row["gpu_peak_mem_mb"] = megabytes
    result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    leaderboard = report_text(run).split("## Leaderboard")[1].split("\n## ")[0]
    assert "GPU peak MB" in leaderboard and "| 1024 |" in leaderboard


def test_throughput_per_gpu_only_for_gpu_trials(tmp_path):
    """Two trials share GPU 0 (their epochs overlap), one has GPU 1 alone: per-GPU aggregates
    are samples over the seconds the card was busy; a CPU run has no such section."""
    trials = [{"id": f"t{i}", "status": "complete", "epochs": 2, "config": config(3e-3)}
              for i in range(3)]
    run = write_run(tmp_path, trials)
    assert "Throughput per GPU" not in report_text(run)
    placement = {"t0": ("0", 100), "t1": ("0", 101), "t2": ("1", 100)}  # gpu, first epoch start
    for trial_id, (gpu, start) in placement.items():
        result = run / "tune" / trial_id / "result.json"
        rows = [json.loads(line) for line in result.read_text().splitlines()]
        for epoch, row in enumerate(rows, 1):  # epochs of 10 s, 100 samples each
            row.update(gpu_ids=gpu, train_samples=100, time_this_iter_s=10.0,
                       timestamp=start + 10 * epoch)
        result.write_text("".join(json.dumps(row) + "\n" for row in rows))
    from sweep.report.stats import gpu_throughput

    per_trial, per_gpu = gpu_throughput(load_run(run))
    by_gpu = per_gpu.set_index("gpu")
    assert by_gpu.loc["0", "busy_s"] == 21 and by_gpu.loc["0", "samples"] == 400
    assert by_gpu.loc["0", "most at once"] == 2 and by_gpu.loc["0", "trials"] == 2
    assert by_gpu.loc["1", "aggregate_samples_per_s"] == 10.0
    assert sorted(per_trial.gpu) == ["0", "0", "1"]
    section = report_text(run).split("## Throughput per GPU")[1].split("\n## ")[0]
    assert "| 0 | 2 | 2 | 4 | 400 | 21.0 | 19.0 |" in section


def test_one_trial_never_overlaps_itself_on_a_gpu(tmp_path):
    """Seen on an H200: Ray's whole-second timestamps made one trial's consecutive epochs
    overlap, so a GPU running one trial at a time showed "most at once" 2. A trial's epochs run
    one after the other; the float reported_at, where present, gives the exact ends."""
    run = write_run(tmp_path, [{"id": f"t{i}", "status": "complete", "epochs": 3,
                                "config": config(3e-3)} for i in range(2)])
    ends = {"t0": (100.05, 101.95, 103.85), "t1": (105.8, 107.7, 109.6)}  # t1 after t0

    def write_rows(with_floats: bool) -> None:
        for trial_id, floats in ends.items():
            result = run / "tune" / trial_id / "result.json"
            rows = [json.loads(line) for line in result.read_text().splitlines()]
            for row, end in zip(rows, floats):  # epochs of 1.9 s; Ray truncates its stamp
                row.update(gpu_ids="0", train_samples=100, time_this_iter_s=1.9,
                           timestamp=int(end))
                if with_floats:
                    row["reported_at"] = end
            result.write_text("".join(json.dumps(row) + "\n" for row in rows))

    from sweep.report.stats import gpu_throughput

    write_rows(with_floats=False)  # a run written before reported_at existed
    by_gpu = gpu_throughput(load_run(run))[1].set_index("gpu")
    assert by_gpu.loc["0", "most at once"] == 1  # t0's [99.1, 101] overlapped its [98.15, 100]
    write_rows(with_floats=True)
    by_gpu = gpu_throughput(load_run(run))[1].set_index("gpu")
    assert by_gpu.loc["0", "most at once"] == 1
    assert by_gpu.loc["0", "busy_s"] == pytest.approx(3 * 1.9 + 3 * 1.9)


def test_missing_metrics_and_torn_result_line(tmp_path):
    trials = [{"id": "m0", "status": "complete", "epochs": MAX_EPOCHS, "config": config(3e-3),
               "drop": ("val_iou", "samples_per_s")},
              {"id": "m1", "status": "complete", "epochs": MAX_EPOCHS, "config": config(1e-3)}]
    run = write_run(tmp_path, trials)
    result = run / "tune" / "m1" / "result.json"
    result.write_text(result.read_text() + '{"epoch": 5, "val_di')  # killed mid-write
    text = report_text(run)
    assert "val_iou is missing in 1 trial(s)" in text
    assert "1 unreadable line(s) skipped" in text
    assert "| m0 | complete |" in text and "— / —" in text


def test_no_study_no_experiment_no_status(tmp_path):
    trials = [{"id": f"n{i}", "status": "complete", "epochs": e, "config": config(lr, seed=i)}
              for i, (lr, e) in enumerate([(3e-3, 4), (1e-3, 4), (5e-3, 2)])]
    text = report_text(write_run(tmp_path, trials, study=False, status=False, experiment=False))
    assert "study.journal is missing" in text
    assert "experiment.yaml is missing" in text
    assert "trials that ran all 4 epochs count as complete" in text
    assert "3 trials (2 complete, 1 unknown)" in text


def test_empty_run_directory(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    text = report_text(run)
    assert "holds no trials yet" in text and "tune/ is missing" in text


# ---- several runs, and the command line ---------------------------------------------------------

def test_two_runs_side_by_side(tmp_path):
    unet = write_run(tmp_path, twelve_trials(), name="unet")
    segnet_trials = [{"id": f"g{i}", "status": "complete", "epochs": MAX_EPOCHS,
                      "config": config(lr, seed=i)} for i, lr in enumerate([1e-3, 2e-3])]
    segnet = write_run(tmp_path, segnet_trials, name="segnet", model="segnet")
    paths = write_report([unet, segnet])
    assert paths["html"].parent == unet
    report = parse(paths["html"])
    assert report.headings[:2] == ["Sweep report: unet, segnet", "Runs side by side"]
    assert "Leaderboard — segnet" in report.headings
    assert "best learning curve of each run" in [i["alt"] for i in report.images]
    markdown = paths["md"].read_text()
    side_by_side = markdown.split("## Runs side by side")[1].split("## ")[0]
    assert f"| best trial | {load_run(unet).trials.trial_id[0]} | g1 |" in side_by_side
    assert "| model | unet | segnet |" in side_by_side  # fixed settings that differ
    assert "| width |" not in side_by_side  # the same in both: left out
    assert set(pd.read_csv(paths["csv"]).run) == {"unet", "segnet"}


def test_cli_writes_and_prints_where(tmp_path, capsys):
    run = write_run(tmp_path, twelve_trials()[:3])
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert str(run / "report.html") in printed and str(run / "trials.csv") in printed


def test_cli_missing_run_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"error: {tmp_path / 'nope'}: no such run directory"


def test_categorical_parameters_plot_and_group(tmp_path):
    """crack_unet searches optimizer (strings) and bilinear (booleans) beside numbers."""
    space = {**SPACE, "optimizer": {"choice": ["rmsprop", "adamw"]},
             "bilinear": {"choice": [False, True]}}
    trials = [{"id": f"c{i}", "status": "complete", "epochs": MAX_EPOCHS,
               "config": {**config(3e-3, seed=i), "optimizer": ["rmsprop", "adamw"][i % 2],
                          "bilinear": i < 2}} for i in range(4)]
    run = write_run(tmp_path, trials, space=space, study=False)
    groups = seed_groups(load_run(run))
    assert sorted(groups.n) == [1, 1, 1, 1]
    assert "lr=0.003, batch_size=4, optimizer=adamw, bilinear=True" in set(groups.configuration)
    report = parse(write_report([run])["html"])
    assert "parallel coordinates of the searched parameters" in [i["alt"] for i in report.images]
    for image in report.images:
        decode_png(image["src"])


def test_several_seed_trials_rank_by_the_mean_of_their_seeds(tmp_path):
    """search.seeds=k: each trial's result rows carry val_dice_seed<S> (the mean is val_dice);
    the seed-aware ranking takes one score per seed, at the trial's best mean epoch."""
    trials = [{"id": f"k{i}", "status": "complete", "epochs": MAX_EPOCHS,
               "config": {"lr": lr, "batch_size": 4, "num_workers": 0, "seed": 0}}
              for i, lr in enumerate((3e-3, 4e-4))]
    run = write_run(tmp_path, trials)  # (the toy's score needs a seed; a real run has none)
    for trial in trials:
        path = run / "tune" / trial["id"] / "result.json"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            row.update(val_dice_seed0=row["val_dice"] - 0.01, val_dice_seed1=row["val_dice"] + 0.01)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    groups = seed_groups(load_run(run))
    assert list(groups.n) == [2, 2] and groups.configuration.iloc[0].startswith("lr=0.003")
    best = max(dice_for(trials[0]["config"], e) for e in range(1, MAX_EPOCHS + 1))
    assert "seed" not in groups.configuration.iloc[0]
    assert groups["mean"].iloc[0] == pytest.approx(best)
    assert groups.ci95_low.iloc[0] < best < groups.ci95_high.iloc[0]
