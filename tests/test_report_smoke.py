"""The report of a real sweep: experiments/smoke.yaml run end to end by the `smoke_run` fixture."""
from __future__ import annotations

import json
import shutil
import time

import pandas as pd
import pytest
from test_report import decode_png, parse

from sweep.report.build import write_report


@pytest.fixture(scope="module")
def smoke_report(smoke_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("report") / smoke_run.name
    shutil.copytree(smoke_run, run)  # the shared run stays as the sweep left it
    started = time.perf_counter()
    paths = write_report([run])
    return run, paths, time.perf_counter() - started


def test_every_trial_of_the_sweep_is_in_the_report(smoke_report):
    run, paths, seconds = smoke_report
    statuses = json.loads((run / "trial_status.json").read_text())
    trials = pd.read_csv(paths["csv"], dtype={"trial_id": str}).set_index("trial_id")
    assert set(trials.index) == set(statuses)
    for trial_id, entry in statuses.items():
        assert trials.loc[trial_id, "status"] == entry["status"]
        assert trials.loc[trial_id, "epochs"] == entry["epochs"]
        # best val_dice as Ray recorded it, epoch by epoch, in the trial's result.json
        result = next((run / "tune").glob(f"*{trial_id}*/result.json"))
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        assert trials.loc[trial_id, "best_val_dice"] == pytest.approx(
            max(r["val_dice"] for r in rows))
    assert seconds < 20, f"report took {seconds:.1f} s"


def test_the_sweeps_report_is_complete_and_decodable(smoke_report):
    run, paths, _ = smoke_report
    report = parse(paths["html"])
    assert report.tables >= 3  # leaderboard, seed groups, outcomes
    alts = [image["alt"] for image in report.images]
    for alt in ("learning curves of the top trials", "val_dice against each searched parameter",
                "parameter importance", "parallel coordinates of the searched parameters",
                "throughput against num_workers and batch_size", "trial outcomes"):
        assert alt in alts
    for image in report.images:
        decode_png(image["src"])
    markdown = paths["md"].read_text()
    assert "is missing" not in markdown  # a real sweep leaves every file the report reads
    assert "PedAnovaImportanceEvaluator" in markdown
    experiment_space = ("lr", "batch_size")
    leaderboard = markdown.split("## Leaderboard")[1].split("\n## ")[0]
    assert all(f" {name} |" in leaderboard for name in experiment_space)
