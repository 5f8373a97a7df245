"""Multi-objective sweeps (docs/PARETO.md): search.objectives checked in one line each, the
searcher telling Optuna a vector (and pruned trials PRUNED) under the single-objective ordering
rules, the Pareto table and `pick`. One tiny end-to-end sweep of the shipped example is shared
by every test that reads a run."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.study import StudyDirection
from optuna.trial import TrialState

from sweep.__main__ import main
from sweep.cli.report import rebuild_front
from sweep.experiment import load_experiment
from sweep.faults import EPOCH_DELAYS_ENV
from sweep.front import Point, front_of, table_rows
from sweep.pick import Constraint, closest, parse_constraints
from sweep.report import pareto as report_pareto
from sweep.report import plots
from sweep.report.load import RunData, load_run
from sweep.report.stats import param_importances
from sweep.rundir import (
    BEST_CHECKPOINT,
    BEST_CONFIG,
    CHECKPOINT_FILE,
    EXPERIMENT_FILE,
    MIRROR_FILE,
    PARETO_CSV,
    REPORT_HTML,
    REPORT_MD,
    STATUS_FILE,
    WANDB_SWEEP_FILE,
    TrialRecord,
    journal_storage,
    read_trial,
    storage_of,
)
from sweep.runner import run_experiment
from sweep.search import make_searcher
from sweep.wandb_mirror.front import front_rows
from sweep.wandb_mirror.inspect import read_run
from tests.helpers import TINY_DATA
from tests.test_report import decode_png, parse
from training.settings import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PARETO = EXPERIMENTS / "quickstart_pareto.yaml"
QUICKSTART = EXPERIMENTS / "quickstart.yaml"
OBJECTIVES = "--search.objectives="
LOAD_ERROR = r"latency_ms depends on the machine's load.*search.mode=async.*params, flops"


# ---- search.objectives: one line naming the entry -------------------------------------------
@pytest.mark.parametrize("overrides, message", [
    ([OBJECTIVES + "flops"], r"search.objectives = 'flops' should be a list"),
    ([OBJECTIVES + "[flops, params]"], r"search.objectives\[0\] = 'flops' should be one "),
    ([OBJECTIVES + "[{val_dice: max, flops: min}]"], r"search.objectives\[0\] = .* one "),
    ([OBJECTIVES + "[{val_dice: max}, {flopz: min}]"],
     r"search.objectives\[1\] = \{'flopz': 'min'\} should be a metric among val_dice, "),
    ([OBJECTIVES + "[{val_dice: up}, {flops: min}]"],
     r"search.objectives\[0\] = .* should be \{val_dice: max\} or \{val_dice: min\}"),
    ([OBJECTIVES + "[{val_dice: max}, {val_dice: min}]"],
     r"search.objectives\[1\] = .*not listed before \(val_dice is\)"),
    ([OBJECTIVES + "[{flops: min}]"], r"search.objectives = .* 2 or more objectives"),
    ([OBJECTIVES + "[{val_dice: max}, {flops: min}, {params: min}, {val_loss: min}, "
                   "{val_iou: max}]"], r"at most 4 objectives"),
    ([OBJECTIVES + "[{val_dice: max}, {cpu_load: min}]"],
     r"search.objectives\[1\] = .*cpu_load is the machine's load .*not a cost of the model"),
    ([OBJECTIVES + "[{val_dice: max}, {latency_ms: min}]"], LOAD_ERROR),
    ([OBJECTIVES + "[{val_dice: max}, {samples_per_s: max}]"], r"samples_per_s depends on"),
    (["--search.sampler=bohb"], r"search.sampler = 'bohb' should be tpe, nsga2, random, gp "
                                r"with 2 search.objectives \(bohb fits its model to one metric"),
])
def test_bad_objectives_are_one_line_naming_the_entry(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_experiment(PARETO, overrides)
    assert "\n" not in str(error.value)


def test_the_shipped_example_trades_val_dice_against_flops_and_one_objective_is_the_default():
    experiment = load_experiment(PARETO)
    assert experiment.search.objective_list() == [("val_dice", "max"), ("flops", "min")]
    assert experiment.search.mode == "reproducible" and "width" in experiment.space
    assert load_experiment(QUICKSTART).search.objective_list() == []
    said = load_experiment(QUICKSTART, [OBJECTIVES + "[{val_dice: max}]"])
    assert said.search.objective_list() == []  # the default, said out loud


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp"])
def test_samplers_of_several_objectives_and_async_mode_takes_a_measured_cost(sampler):
    latency = [OBJECTIVES + "[{val_dice: max}, {latency_ms: min}]", "--search.mode=async"]
    experiment = load_experiment(PARETO, [f"--search.sampler={sampler}", *latency])
    assert experiment.search.objective_list()[1] == ("latency_ms", "min")


# ---- the searcher: a vector per trial, pruned trials PRUNED, tells in trial order ----------
def searcher_of(tmp_path, *overrides: str):
    experiment = load_experiment(PARETO, ["--search.trials=6", "--search.startup_trials=2",
                                          *overrides])
    return make_searcher(experiment, tmp_path, study_storage=optuna.storages.InMemoryStorage())


def end(searcher, number: int, epoch: int, dice: float = 0.5, flops: float = 2e6) -> None:
    searcher.on_trial_complete(f"t{number}", {"epoch": epoch, "val_dice": dice, "flops": flops})


def study_of(searcher):
    return searcher.searcher._ot_study


def test_a_complete_trial_is_told_its_last_epochs_objectives_a_stopped_one_pruned(tmp_path):
    searcher = searcher_of(tmp_path, "--search.mode=async")
    assert searcher.suggest("t0") and searcher.suggest("t1")
    # Optuna 5 raises for intermediate values in a multi-objective study: none are sent
    searcher.on_trial_result("t0", {"epoch": 1, "val_dice": 0.1, "flops": 2e6})
    end(searcher, 1, epoch=1)  # stopped at the first rung
    end(searcher, 0, epoch=6, dice=0.7, flops=3e6)
    study = study_of(searcher)
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    first, second = study.get_trials(deepcopy=False)
    assert (first.state, first.values) == (TrialState.COMPLETE, [0.7, 3e6])
    assert (second.state, second.values) == (TrialState.PRUNED, None)
    assert (first.user_attrs["status"], second.user_attrs["status"]) == ("complete", "pruned")


def test_a_complete_trial_without_an_objective_is_told_pruned_not_invented(tmp_path):
    searcher = searcher_of(tmp_path, "--search.mode=async")
    assert searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"epoch": 6, "val_dice": 0.7})  # no flops
    assert study_of(searcher).get_trials(deepcopy=False)[0].state == TrialState.PRUNED


def test_reproducible_mode_tells_vectors_in_trial_order_under_the_lag_rule(tmp_path):
    searcher = searcher_of(tmp_path, "--search.lag=2")
    assert searcher.suggest("t0") and searcher.suggest("t1")
    end(searcher, 1, epoch=6, dice=0.6)
    assert searcher.suggest("t2") is None  # trial 0, 2 back, still runs
    end(searcher, 0, epoch=2)
    assert searcher.suggest("t2") is not None
    trials = study_of(searcher).get_trials(deepcopy=False)
    assert [(t.state, t.values) for t in trials[:2]] == [(TrialState.PRUNED, None),
                                                          (TrialState.COMPLETE, [0.6, 2e6])]


def test_one_objective_keeps_the_single_objective_searcher(tmp_path):
    experiment = load_experiment(QUICKSTART, ["--search.sampler=tpe"])
    searcher = make_searcher(experiment, tmp_path,
                             study_storage=optuna.storages.InMemoryStorage()).searcher
    assert searcher.metric == "val_dice" and searcher.mode == "max"
    assert searcher._ot_study.directions == [StudyDirection.MAXIMIZE]


# ---- the front and pick's rules on hand-made points (no run) --------------------------------
def point(number: int, dice: float, flops: float, seeds=(0.0, 0.0)) -> Point:
    row = {"epoch": 6, "val_dice": dice, "flops": flops, "checkpoint_dir_name": "c",
           "val_dice_seed0": seeds[0], "val_dice_seed1": seeds[1]}
    record = TrialRecord(f"t{number}", None, "tune", {"lr": 0.001 * (number + 1)}, [row],
                         frozenset({"c"}))
    return Point(number, record, row, [dice, flops])


def test_the_front_keeps_the_non_dominated_best_first_and_shows_the_seeds_spread():
    points = [point(0, 0.5, 4.0), point(1, 0.7, 8.0, seeds=(0.65, 0.75)), point(2, 0.4, 4.0),
              point(3, 0.7, 9.0), point(4, 0.3, 2.0)]
    front = front_of(points, ["max", "min"])
    assert [p.number for p in front] == [1, 0, 4]  # 2 and 3 are dominated
    rows = table_rows(load_experiment(PARETO), front)
    assert rows[0]["val_dice_seed_min"] == 0.65 and rows[0]["val_dice_seed_max"] == 0.75
    assert rows[0]["config/lr"] == 0.002 and rows[0]["trial_id"] == "t1"
    assert list(rows[0])[:3] == ["number", "trial_id", "epoch"]


def test_constraints_parse_strictly_and_the_closest_row_is_by_each_objectives_range():
    metrics = ["val_dice", "flops"]
    assert parse_constraints([("min", "val_dice=0.7"), ("max", "flops=5")], metrics) == [
        Constraint("val_dice", "min", 0.7), Constraint("flops", "max", 5.0)]
    for bad in ("flops", "flops=x", "flops=nan", "=3"):
        with pytest.raises(ConfigError, match=f"--max '{bad}' should be METRIC=NUMBER"):
            parse_constraints([("max", bad)], metrics)
    with pytest.raises(ConfigError, match="params is not an objective of this run"):
        parse_constraints([("max", "params=5")], metrics)
    front = [point(1, 0.7, 8.0), point(0, 0.5, 4.0), point(4, 0.3, 2.0)]
    # flops <= 1 and val_dice >= 0.6: trial 4 misses flops by 1/6 of its range and val_dice
    # by 0.75 of its range; trial 0 misses by 3/6 and 0.25: 0.75 in all, less than 0.917
    constraints = [Constraint("flops", "max", 1.0), Constraint("val_dice", "min", 0.6)]
    assert closest(front, constraints, metrics).number == 0


# ---- one tiny sweep of the shipped example ------------------------------------------------------
# The shipped example on tiny data, learning as smoke.yaml does (adamw); the sampler's seed 4
# draws both widths among its 4 random start-up trials (seed 0 drew width 8 four times), so
# the front has a cheap and a good end.
TINY_PARETO = [*TINY_DATA, "--space.width={choice: [2, 8]}", "--train.optimizer=adamw",
               "--space.lr={loguniform: [1.0e-3, 1.0e-2]}", "--search.trials=6",
               "--search.startup_trials=4", "--search.seed=4", "--scheduler.max_epochs=3",
               "--search.probe_steps=0", "--wandb.enabled=false"]


# The shared sweep is mirrored to W&B (offline, no validation panels) for the tests of the
# summary run's Pareto front and the objectives in every trial's history.
MIRRORED = ["--wandb.enabled=true", "--wandb.mode=offline", "--wandb.image_count=0"]


@pytest.fixture(scope="module")
def pareto_run(ray_session, tmp_path_factory) -> Path:
    experiment = load_experiment(PARETO, [*TINY_PARETO, *MIRRORED])
    return run_experiment(experiment, tmp_path_factory.mktemp("pareto")).run_dir


@pytest.fixture
def picked_copy(pareto_run, tmp_path) -> Path:
    """A copy of the run for `pick`, which rewrites best.pth and best_config.yaml."""
    copy = tmp_path / "run"
    shutil.copytree(pareto_run, copy)  # its trials too: the storage is the run directory
    return copy


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / PARETO_CSV).open() as handle:
        return list(csv.DictReader(handle))


def complete_vectors(run_dir: Path) -> dict[str, tuple[float, float]]:
    """Each complete trial's (val_dice, flops) at its last epoch, read from its result.json."""
    statuses = json.loads((run_dir / STATUS_FILE).read_text())
    out = {}
    for trial_id, entry in statuses.items():
        if entry["status"] == "complete":
            rows = read_trial(storage_of(run_dir), trial_id).rows
            last = [r for r in rows if r["epoch"] == max(r["epoch"] for r in rows)][-1]
            out[trial_id] = (last["val_dice"], last["flops"])
    return out


def better_or_equal(a, b) -> bool:
    """a at least as good as b: val_dice higher, flops lower (written out, not sweep/pareto.py)."""
    return a[0] >= b[0] and a[1] <= b[1]


def test_the_pareto_table_holds_exactly_the_non_dominated_complete_trials(pareto_run):
    rows = csv_rows(pareto_run)
    assert rows, "no complete trial: nothing to test"
    assert {"number", "trial_id", "epoch", "config/width", "config/lr", "config/batch_size",
            "val_dice", "flops", "val_dice_seed_min", "val_dice_seed_max"} <= set(rows[0])
    vectors = complete_vectors(pareto_run)
    on_front = {row["trial_id"] for row in rows}
    for row in rows:
        mine = vectors[row["trial_id"]]
        assert (float(row["val_dice"]), float(row["flops"])) == pytest.approx(mine)
        assert float(row["val_dice_seed_min"]) <= mine[0] <= float(row["val_dice_seed_max"])
        assert row["epoch"] == "3"
        for other, theirs in vectors.items():
            assert not (better_or_equal(theirs, mine) and theirs != mine), \
                f"{row['trial_id']} is dominated by complete trial {other}"
    for trial_id, vector in vectors.items():  # and none is missing from it
        if trial_id not in on_front:
            assert any(better_or_equal(vectors[f], vector) for f in on_front), trial_id
    dice = [float(row["val_dice"]) for row in rows]
    assert dice == sorted(dice, reverse=True)  # best primary first: the default pick


def test_optuna_has_two_objectives_and_the_stopped_trials_are_pruned(pareto_run):
    statuses = json.loads((pareto_run / STATUS_FILE).read_text())
    study = optuna.load_study(study_name="quickstart_pareto",
                              storage=journal_storage(pareto_run))
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    by_id = {t.user_attrs["ray_trial_id"]: t for t in study.get_trials(deepcopy=False)}
    vectors = complete_vectors(pareto_run)
    kinds = {entry["status"] for entry in statuses.values()}
    assert kinds == {"complete", "pruned"}, kinds  # MO-ASHA stopped some
    for trial_id, entry in statuses.items():
        told = by_id[trial_id]
        if entry["status"] == "pruned":
            assert (told.state, told.values) == (TrialState.PRUNED, None)
        else:
            assert told.state == TrialState.COMPLETE
            assert told.values == pytest.approx(list(vectors[trial_id]))


def test_the_sweep_hands_over_the_default_pick_and_report_rebuilds_the_table(pareto_run,
                                                                              tmp_path):
    first = csv_rows(pareto_run)[0]
    text = (pareto_run / BEST_CONFIG).read_text()
    assert "\n# the default pick of the Pareto front: its best val_dice (python -m sweep " in text
    config = yaml.safe_load(text)
    assert config["width"] == int(first["config/width"])
    assert config["lr"] == pytest.approx(float(first["config/lr"]))
    copy = tmp_path / "run"
    shutil.copytree(pareto_run, copy)
    (copy / PARETO_CSV).unlink()
    assert rebuild_front(copy) == f"pareto: {copy / PARETO_CSV} ({len(csv_rows(pareto_run))} " \
                                  f"on the front)"
    assert (copy / PARETO_CSV).read_text() == (pareto_run / PARETO_CSV).read_text()


def test_pick_writes_the_front_trial_meeting_the_constraint(picked_copy, capsys):
    rows = csv_rows(picked_copy)
    cheapest = min(float(row["flops"]) for row in rows)
    assert len(rows) > 1 and float(rows[0]["flops"]) > cheapest  # not the default pick
    wanted = max((row for row in rows if float(row["flops"]) <= cheapest),
                 key=lambda row: float(row["val_dice"]))
    assert main(["pick", str(picked_copy), "--max", f"flops={cheapest!r}"]) == 0
    line = capsys.readouterr().out.strip()
    assert f"picked trial {wanted['number']} ({wanted['trial_id']}" in line and "\n" not in line
    assert f"the best val_dice among the front trials with flops <= {cheapest:g}" in line
    text = (picked_copy / BEST_CONFIG).read_text()
    assert f"# picked from the Pareto front: trial {wanted['number']} " in text
    config = yaml.safe_load(text)
    for key in ("width", "batch_size", "lr"):
        assert config[key] == pytest.approx(type(config[key])(float(wanted[f"config/{key}"])))
    checkpoint = read_trial(storage_of(picked_copy), wanted["trial_id"])
    last = [r for r in checkpoint.rows if r["epoch"] == 3][-1]
    source = checkpoint.path / last["checkpoint_dir_name"] / CHECKPOINT_FILE
    assert (picked_copy / BEST_CHECKPOINT).read_bytes() == source.read_bytes()


def test_pick_writes_nothing_when_no_front_trial_meets_the_constraints(picked_copy, capsys):
    before = {name: (picked_copy / name).read_bytes() for name in (BEST_CONFIG, BEST_CHECKPOINT)}
    assert main(["pick", str(picked_copy), "--min", "val_dice=1.5", "--max", "flops=1"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("no front trial meets val_dice >= 1.5 and flops <= 1 ")
    assert "closest: trial " in line and line.endswith("nothing written")
    assert {n: (picked_copy / n).read_bytes() for n in before} == before
    assert main(["pick", str(picked_copy), "--max", "params=3"]) == 2  # not an objective
    assert "params is not an objective of this run" in capsys.readouterr().err


def test_pick_on_a_run_of_one_objective_says_so(tmp_path, capsys):
    (tmp_path / EXPERIMENT_FILE).write_text(yaml.safe_dump(
        load_experiment(QUICKSTART).to_dict()))
    assert main(["pick", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "this run has one objective (val_dice, max)" in error and "\n" not in error
    assert not (tmp_path / PARETO_CSV).exists()


# ---- reproducible under uneven load -----------------------------------------------------------
DELAY = 5.0  # s per epoch (tests/test_sweep_repro.py: it must dwarf a trial's start-up)


@pytest.mark.slow
def test_the_front_is_the_same_whatever_order_trials_finish_in(ray_session, tmp_path,
                                                               monkeypatch):
    """Two sweeps at concurrency 3, trials 0-2 slowed in opposite orders: the same statuses,
    study and Pareto table (trial ids are random: compared by trial number)."""
    tables = []
    for order in ([0, DELAY, 2 * DELAY], [2 * DELAY, DELAY, 0]):
        monkeypatch.setenv(EPOCH_DELAYS_ENV, json.dumps(order))
        experiment = load_experiment(PARETO, [*TINY_PARETO, "--search.trials=5",
                                              "--search.concurrency=3", "--search.lag=3",
                                              "--search.seeds=1", "--scheduler.max_epochs=2",
                                              "--resources.cpus=0.5"])
        run_dir = run_experiment(experiment, tmp_path / str(order[0])).run_dir
        statuses = json.loads((run_dir / STATUS_FILE).read_text())
        number = {trial_id: entry["number"] for trial_id, entry in statuses.items()}
        study = optuna.load_study(study_name="quickstart_pareto",
                                  storage=journal_storage(run_dir))
        tables.append({
            "statuses": sorted((e["number"], e["status"], e["config"]["lr"])
                               for e in statuses.values()),
            "study": [(t.number, t.state, t.values, t.params) for t in study.trials],
            "front": [{**row, "trial_id": number[row["trial_id"]]} for row in csv_rows(run_dir)],
        })
    assert tables[0] == tables[1]
    assert {status for _, status, _ in tables[0]["statuses"]} == {"complete", "pruned"}
    assert all(not math.isnan(float(row["flops"])) for row in tables[0]["front"])


# ---- the report and W&B of a multi-objective run ------------------------------------------------
def labelled_points(ax) -> dict[str, list[tuple[float, float]]]:
    """The figure's scatters by legend label: (cost, primary) of each dot drawn."""
    return {c.get_label(): sorted(map(tuple, c.get_offsets().tolist())) for c in ax.collections
            if not c.get_label().startswith("_")}


def section_of(markdown: str, title: str) -> str:
    return markdown.split(f"\n## {title}\n")[1].split("\n## ")[0]


def test_the_report_shows_the_front_of_pareto_csv_and_says_the_default_pick(pareto_run):
    rows = csv_rows(pareto_run)
    statuses = json.loads((pareto_run / STATUS_FILE).read_text())
    markdown = (pareto_run / REPORT_MD).read_text()  # the report the end of the sweep wrote
    section = section_of(markdown, "Pareto front")
    first = rows[0]
    assert (f"best.pth is trial {first['number']} (`{first['trial_id']}`): the front's best "
            f"val_dice (the default pick") in section
    if len(rows) > 1:  # the next trial down the front, by a cap on its flops
        assert f"`python -m sweep pick {pareto_run} --max flops=" in section
        assert f"picks another (trial {rows[1]['number']}: val_dice " in section
    pruned = sum(entry["status"] == "pruned" for entry in statuses.values())
    assert f"{pruned} pruned trial(s) are left out" in section
    table = section.split("(pareto.csv)**\n\n")[1].splitlines()[2:]  # after header and rule
    assert [line.split(" | ")[0].removeprefix("| ") for line in table] == \
        [row["number"] for row in rows]
    assert [line.split(" | ")[1] for line in table] == [row["trial_id"] for row in rows]
    (image,) = [i for i in parse(pareto_run / REPORT_HTML).images
                if i["alt"] == "Pareto front: val_dice against flops"]
    decode_png(image["src"])


def test_the_figures_strong_and_faded_trials_are_pareto_csvs_split(pareto_run):
    run = load_run(pareto_run)
    rows = csv_rows(pareto_run)
    drawn = report_pareto.points(run, {row["trial_id"] for row in rows})
    vectors = complete_vectors(pareto_run)
    assert set(drawn.trial_id) == set(vectors)  # every complete trial, no pruned one
    for point in drawn.itertuples():
        assert (point.val_dice, point.flops) == pytest.approx(vectors[point.trial_id])
    by_id = drawn.set_index("trial_id")
    for row in rows:  # the error bars: the seeds' range, as pareto.csv has it
        assert (by_id.low[row["trial_id"]], by_id.high[row["trial_id"]]) == pytest.approx(
            (float(row["val_dice_seed_min"]), float(row["val_dice_seed_max"])))
    (ax,) = plots.pareto_fronts(drawn, run.objectives).axes
    shown = labelled_points(ax)
    assert shown["Pareto front"] == sorted((float(r["flops"]), float(r["val_dice"]))
                                           for r in rows)
    dominated = sorted((v[1], v[0]) for t, v in vectors.items()
                       if t not in {row["trial_id"] for row in rows})
    assert shown.get("dominated", []) == dominated


def write_mo_run(tmp_path: Path) -> RunData:
    """A hand-made run of three objectives: a front of trials 0-2 (trial 2 beaten on val_dice
    and flops by trial 0, on the front by its params), trial 3 dominated by trial 0, trial 4
    pruned (its early values would dominate everything)."""
    points = {0: (0.8, 10.0, 5.0), 1: (0.6, 4.0, 9.0), 2: (0.7, 12.0, 1.0),
              3: (0.5, 11.0, 6.0), 4: (0.9, 1.0, 1.0)}
    history = pd.DataFrame([{"trial_id": f"t{n}", "epoch": epoch, "val_dice": dice / (4 - epoch),
                             "flops": flops, "params": params,
                             "val_dice_seed0": dice / (4 - epoch) - 0.02,
                             "val_dice_seed1": dice / (4 - epoch) + 0.02}
                            for n, (dice, flops, params) in points.items()
                            for epoch in (range(1, 4) if n != 4 else [1])])
    trials = pd.DataFrame({"trial_id": [f"t{n}" for n in points], "number": list(points),
                           "status": ["complete"] * 4 + ["pruned"]})
    (tmp_path / PARETO_CSV).write_text(
        "number,trial_id,epoch,config/width,val_dice,val_dice_seed_min,val_dice_seed_max,"
        "flops,params\n0,t0,3,8,0.8,0.78,0.82,10.0,5.0\n2,t2,3,4,0.7,0.68,0.72,12.0,1.0\n"
        "1,t1,3,2,0.6,0.58,0.62,4.0,9.0\n")
    (tmp_path / BEST_CONFIG).write_text("# picked from the Pareto front: trial 1 (t1, epoch 3): "
                                        "val_dice 0.6, flops 4 (...)\nwidth: 2\n")
    objectives = [{"val_dice": "max"}, {"flops": "min"}, {"params": "min"}]
    return RunData(tmp_path, "mo", {"search": {"objectives": objectives}}, {}, trials,
                   history, None, None)


def test_dominated_trials_are_faded_and_each_view_draws_its_own_staircase(tmp_path):
    run = write_mo_run(tmp_path)
    drawn = report_pareto.points(run, {"t0", "t1", "t2"})
    flops_ax, params_ax = plots.pareto_fronts(drawn, run.objectives).axes
    assert labelled_points(flops_ax) == {"Pareto front": [(4.0, 0.6), (10.0, 0.8), (12.0, 0.7)],
                                         "dominated": [(11.0, 0.5)]}  # no pruned trial
    alpha = {c.get_label(): c.get_alpha() for c in flops_ax.collections}
    assert alpha["dominated"] < 0.5 and alpha["Pareto front"] == 1.0
    # the staircase joins the front trials this view keeps, by cost: trial 2 loses on
    # val_dice and flops to trial 0 (it is on the front by its params), trial 1 to trial 2 here
    (flops_line,), (params_line,) = ([line for line in ax.lines
                                      if line.get_gid() == plots.STAIRCASE]
                                     for ax in (flops_ax, params_ax))
    assert list(flops_line.get_xdata()) == [4.0, 10.0]
    assert list(params_line.get_xdata()) == [1.0, 5.0]
    text = report_pareto.default_pick(run, report_pareto.read_front(run))
    assert text.startswith("The default pick was trial 0 (`t0`): the front's best val_dice; "
                           "`pick` has replaced it since: best.pth is now trial 1 (t1, epoch 3)")
    # trial 2, next down the front, costs more flops than trial 0: a cap picks trial 1
    assert f"pick {tmp_path} --max flops=4` picks another (trial 1: val_dice 0.6000)" in text


def test_importance_of_several_objectives_is_the_primary_ones():
    """The primary objective depends on x only, the second on y only: with the primary as
    Optuna's target, x carries the importance."""
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (-(t.suggest_float("x", 0, 1) - 0.3) ** 2,
                              t.suggest_float("y", 0, 1)), n_trials=60)
    values, note = param_importances(study, "val_dice")
    assert values["x"] > 0.8 and "the importance is for the primary one, val_dice" in note


def test_a_report_of_one_objective_has_no_pareto_section(smoke_run):
    markdown = (smoke_run / REPORT_MD).read_text()
    assert "## Pareto front" not in markdown and not (smoke_run / PARETO_CSV).exists()
    assert "objectives" not in section_of(markdown, "Parameter importance")
    html = (smoke_run / REPORT_HTML).read_text()
    assert "Optuna&#x27;s importance of each parameter for val_dice.</figcaption>" in html


def test_wandb_holds_each_objective_per_epoch_and_the_front_in_the_summary_run(pareto_run):
    rows = csv_rows(pareto_run)
    status = json.loads((pareto_run / MIRROR_FILE).read_text())
    folder = pareto_run / status["summary_run"]["dir"]
    summary = read_run(folder)
    assert summary.config["objectives"] == [{"val_dice": "max"}, {"flops": "min"}]
    assert summary.summary["pareto/default_pick"] == int(rows[0]["number"])
    table = json.loads((folder / "files" / summary.summary["pareto_front.path"]).read_text())
    assert table["columns"] == list(rows[0])
    assert [[str(value) for value in logged] for logged in table["data"]] == \
        [list(row.values()) for row in rows]
    (chart,) = [update["update"]["_wandb.visualize.pareto_front_plot"]
                for update in summary.of_type("config")
                if "_wandb.visualize.pareto_front_plot" in update["update"]]
    assert chart["panel_config"]["fieldSettings"] == {"x": "flops", "y": "val_dice"}
    for row in rows:  # each front trial's W&B history holds both objectives, every epoch
        history = read_run(pareto_run / status["runs"][row["trial_id"]]["dirs"][-1]).history
        ray = read_trial(storage_of(pareto_run), row["trial_id"]).rows
        assert [(h["epoch"], h["val_dice"], h["flops"]) for h in history] == \
            [(r["epoch"], r["val_dice"], r["flops"]) for r in ray]
        assert (history[-1]["val_dice"], history[-1]["flops"]) == pytest.approx(
            (float(row["val_dice"]), float(row["flops"])))
    sweep = yaml.safe_load((pareto_run / WANDB_SWEEP_FILE).read_text())
    assert sweep["metric"] == {"name": "val_dice", "goal": "maximize"}
    assert "2 objectives, val_dice (max), flops (min)" in sweep["description"]


def test_the_front_table_for_wandb_keeps_ids_as_text_and_empty_seeds_as_none(tmp_path):
    (tmp_path / PARETO_CSV).write_text("number,trial_id,config/optimizer,val_dice,"
                                       "val_dice_seed_min,flops\n3,00012345,adamw,0.5,,2.0\n")
    assert front_rows(tmp_path) == (["number", "trial_id", "config/optimizer", "val_dice",
                                     "val_dice_seed_min", "flops"],
                                    [[3, "00012345", "adamw", 0.5, None, 2.0]])
    assert front_rows(tmp_path / "elsewhere") is None
