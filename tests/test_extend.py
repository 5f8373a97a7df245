"""`extend`: a sweep of 16 trials extended to 24 gives, in reproducible mode, the 24 trials one
sweep of 24 gives (trials, statuses, metrics, study, winner), at concurrency 2 (lag 4). The
16-trial sweep told trials 13-15 at its end; one sweep of 24 asks trial 16 having told trials
0..12 only, so TPE would model trial 16 from more trials if the extension did not take those
tells back (sweep/extend.py). In async mode it runs every trial once.

A changed space tells the sampler exactly the earlier trials inside it (the study checked trial
by trial); a change that cannot be honoured is one line and changes no byte of the run
directory; a warm start from a sweep of k finished trials gives the study k + n trials and
trains only the n. One 16-trial sweep (copied, untouched, for everything but the equality) and
one 24-trial reference are shared by the module."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from sweep.experiment import load_experiment
from sweep.extend import read_extensions
from sweep.respace import OUTSIDE_ATTR, Respace
from sweep.rundir import journal_storage, read_trials, storage_of
from sweep.runner import extend_experiment, resume_experiment, run_experiment
from sweep.same_problem import fit_to_space, problem_difference
from sweep.searcher_state import take_back_early_tells, use_space
from sweep.warm_start import WARM_ATTR, read_sources
from tests.helpers import TINY_DATA
from tests.test_sweep_repro import SMOKE, TINY, outcome
from training.settings import ConfigError

FIRST, TOTAL = 16, 24
# experiments/smoke.yaml on the tiny data: 2 epochs (ASHA's one rung, at epoch 1, prunes), 2 at
# a time, lag 4 (the default: twice the concurrency), TPE from the fifth trial, no speed probe.
BASE = [*TINY_DATA, "--search.concurrency=2", "--search.startup_trials=4",
        "--scheduler.max_epochs=2", "--scheduler.grace_period=1",
        "--scheduler.reduction_factor=2", "--resources.cpus=0.5", "--search.probe_steps=0",
        "--wandb.enabled=false"]


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    return tmp_path_factory.mktemp("extend")


@pytest.fixture(scope="module")
def reproducible(runs):
    """One sweep of 24 trials and one of 16 (the latter also copied, untouched: `pristine`)."""
    whole = run_experiment(load_experiment(SMOKE, [*BASE, f"--search.trials={TOTAL}"]),
                           runs / "whole")
    part = run_experiment(load_experiment(SMOKE, [*BASE, f"--search.trials={FIRST}"]),
                          runs / "part")
    shutil.copytree(part.run_dir, runs / "pristine" / "smoke")
    return outcome(whole), part.run_dir, runs / "pristine" / "smoke"


def copy_of(pristine: Path, where: Path) -> Path:
    return shutil.copytree(pristine, where / "smoke")


# Once flaky under load (trial 1's epoch-1 row missing): rows lost in the sweep itself, when a
# PAUSED trial continued before Ray's upload of its rows; fixed in sweep/result_log.py.
def test_an_extended_sweep_is_the_sweep_run_at_once(reproducible):
    whole, run_dir, _ = reproducible
    summary = extend_experiment(run_dir, TOTAL)
    extended = outcome(summary)
    assert sorted(extended["trials"]) == list(range(TOTAL))
    for number in range(TOTAL):
        assert extended["trials"][number] == whole["trials"][number], f"trial {number}"
    assert extended["study"] == whole["study"]
    assert extended["best"] == whole["best"] and extended["counts"] == whole["counts"]
    assert extended["best_config"] == whole["best_config"]
    assert {t["status"] for t in extended["trials"].values()} == {"complete", "pruned"}
    # The records say 24, and where the sweep grew; so does the report.
    assert yaml.safe_load((run_dir / "experiment.yaml").read_text())["search"]["trials"] == TOTAL
    assert json.loads((run_dir / "experiment_fingerprint.json").read_text())["search"][
        "trials"] == TOTAL
    assert [(e["from_trials"], e["to_trials"]) for e in read_extensions(run_dir)] == [
        (FIRST, TOTAL)]
    report = (run_dir / "report.md").read_text()
    assert f"Extended at trial {FIRST}: {FIRST} -> {TOTAL} trials" in report
    assert "How the sweep grew" in report


def test_resume_still_refuses_an_edited_experiment_after_an_extension(reproducible, tmp_path):
    _, run_dir, pristine = reproducible
    if read_extensions(run_dir):  # extended by the test above
        copy, total = shutil.copytree(run_dir, tmp_path / "smoke"), TOTAL
    else:  # one trial more is extension enough for this
        copy, total = copy_of(pristine, tmp_path), FIRST + 1
        extend_experiment(copy, total)
    path = copy / "experiment.yaml"
    path.write_text(path.read_text().replace(f"trials: {total}", "trials: 30"))
    with pytest.raises(ConfigError,
                       match=rf"search\.trials changed \(search\.trials: {total} -> 30\)"):
        resume_experiment(copy)


# ---- refusals: one line, nothing changed --------------------------------------------------------
def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (trial folders too) but the lock, by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "sweep.lock"}


def refused(run_dir: Path, trials: int, *overrides: str) -> str:
    with pytest.raises(ConfigError) as error:
        extend_experiment(run_dir, trials, list(overrides))
    message = str(error.value)
    assert "\n" not in message
    return message


def test_extend_refuses_in_one_line_and_changes_nothing(reproducible, tmp_path):
    _, _, pristine = reproducible
    copy = copy_of(pristine, tmp_path)
    before = snapshot(copy)
    assert "already has a total of 16 trials" in refused(copy, FIRST)
    assert "must be above it" in refused(copy, 2)
    for flag, key in [("--train.width=8", "train.width"), ("--train.model=segnet", "train.model"),
                      ("--scheduler.metric=val_loss", "scheduler.metric"),
                      ("--search.seeds=2", "search.seeds"), ("--search.seed=3", "search.seed"),
                      ("--train.seed=5", "train.seed")]:
        message = refused(copy, TOTAL, flag, "--space.lr={loguniform: [1.0e-4, 1.0e-2]}")
        assert message.startswith(f"extend cannot change {key} ("), message
        assert "only search.trials and space.*" in message
    assert "space.lr.loguniform" in refused(copy, TOTAL, "--space.lr={loguniform: [0, 1]}")
    assert "unknown key" in refused(copy, TOTAL, "--train.wdth=8")
    path = copy / "experiment.yaml"
    path.write_text(path.read_text().replace("width: 4", "width: 8"))
    assert refused(copy, TOTAL).startswith(
        f"extend cannot change train.width (4 -> 8, edited in {path}; put it back)")
    path.write_bytes(before["experiment.yaml"])
    assert snapshot(copy) == before  # byte for byte, trial folders and study included
    assert "no sweep to extend here (no experiment.yaml)" in refused(tmp_path / "empty", TOTAL)
    shutil.rmtree(copy / "tune")
    assert "no sweep to extend here (no tune/ folder" in refused(copy, TOTAL)


def test_the_command_line_refusal_is_one_line(reproducible, capsys):
    from sweep.__main__ import main

    _, _, pristine = reproducible
    assert main(["extend", str(pristine), "--trials", "24", "--train.width=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: extend cannot change train.width") and "\n" not in err


# ---- a changed space ----------------------------------------------------------------------------
def test_a_changed_space_tells_exactly_the_trials_inside_it(reproducible, tmp_path):
    """lr widened (every trial fits it) and batch_size taken out of the space (trials now train
    with train.batch_size, 4): the trials that searched batch_size 4 are told with the new
    distributions, the others are kept as FAIL, marked; the two new trials search lr alone."""
    _, _, pristine = reproducible
    copy = copy_of(pristine, tmp_path)
    old = {t.number: t for t in load_study(copy).trials}
    wide = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    summary = extend_experiment(copy, FIRST + 2, ["--space.lr={loguniform: [1e-4, 1e-2]}",
                                                  "--space.batch_size=null"])
    study = {t.number: t for t in load_study(copy).trials}
    assert sorted(study) == list(range(FIRST + 2))
    inside = {n for n, t in old.items() if t.params["batch_size"] == 4}
    assert inside and len(inside) < FIRST  # both kinds are there
    for number, before in old.items():
        after = study[number]
        assert after.intermediate_values == before.intermediate_values, number
        if number in inside:
            assert (after.state, after.values) == (before.state, before.values), number
            assert after.params == {"lr": before.params["lr"]}
            assert after.distributions == {"lr": wide} and OUTSIDE_ATTR not in after.user_attrs
        else:
            assert (after.state, after.params) == (optuna.trial.TrialState.FAIL, {}), number
            mark = after.user_attrs[OUTSIDE_ATTR]
            assert mark["state"] == before.state.name and mark["values"] == before.values
            assert mark["params"] == before.params
            assert mark["reason"].startswith("batch_size=") and "now fixed at 4" in mark["reason"]
    for number in (FIRST, FIRST + 1):
        assert study[number].distributions == {"lr": wide}
        assert study[number].state.is_finished() and OUTSIDE_ATTR not in study[number].user_attrs
    statuses = json.loads((copy / "trial_status.json").read_text())
    new = [e for e in statuses.values() if e["number"] >= FIRST]
    assert len(new) == 2 and all(set(e["config"]) == {"lr"} for e in new)  # batch_size: 4
    assert summary.counts["complete"] + summary.counts["pruned"] == FIRST + 2
    record = read_extensions(copy)[-1]
    assert record["space"]["changed"] == ["space.lr", "space.batch_size"]
    assert sorted(map(int, record["space"]["outside"])) == sorted(set(old) - inside)
    recorded = yaml.safe_load((copy / "experiment.yaml").read_text())
    assert recorded["space"] == {"lr": {"loguniform": [1e-4, 1e-2]}}
    report = (copy / "report.md").read_text()
    assert f"{FIRST - len(inside)} earlier trial(s) lie outside it" in report


def load_study(run_dir: Path):
    return optuna.load_study(study_name="smoke", storage=journal_storage(run_dir))


# ---- warm start ---------------------------------------------------------------------------------
def test_a_warm_start_tells_k_trials_and_trains_only_the_new_ones(reproducible, runs):
    _, _, pristine = reproducible
    source = load_study(pristine).trials
    finished = [t for t in source if t.state.name in ("COMPLETE", "PRUNED")]
    overrides = [*BASE, "--name=warm", "--search.trials=2",
                 f"--search.warm_start=[{pristine}]"]
    summary = run_experiment(load_experiment(SMOKE, overrides), runs / "warm")
    trials = optuna.load_study(study_name="warm", storage=journal_storage(summary.run_dir)).trials
    k = len(finished)
    assert len(trials) == k + 2
    warm, own = trials[:k], trials[k:]
    assert [t.user_attrs[WARM_ATTR]["number"] for t in warm] == [t.number for t in finished]
    assert [(t.params, t.values, t.intermediate_values) for t in warm] == [
        (t.params, t.values, t.intermediate_values) for t in finished]
    assert all(WARM_ATTR not in t.user_attrs and t.user_attrs["ray_trial_id"] for t in own)
    # Never retrained: Tune ran (and W&B would mirror) the 2 new trials only.
    assert len(read_trials(storage_of(summary.run_dir))) == 2 == summary.trials
    assert sorted(p.name for p in (summary.run_dir / "tune").iterdir() if p.is_dir()) == \
        sorted(json.loads((summary.run_dir / "trial_status.json").read_text()))
    record = json.loads((summary.run_dir / "warm_start.json").read_text())
    assert record["told"] == k and record["sources"][0]["path"] == str(pristine)
    report = (summary.run_dir / "report.md").read_text()
    assert f"the sampler was told {k} finished trial(s)" in report
    assert f"{k} warm-start trial(s)" in report
    # The leaderboard lists this run's trials; on request the warm-start ones too.
    from sweep.report import history, sections
    from sweep.report.load import load_run

    run = history.marked(load_run(summary.run_dir))
    board = sections.leaderboard(history.with_warm_start(run), "").blocks[1].frame
    assert len(board) == k + 2 and board["source"].value_counts()["this run"] == 2
    assert "source" not in sections.leaderboard(run, "").blocks[1].frame


def test_warm_start_refuses_a_bad_path_or_another_problem_in_one_line(reproducible, tmp_path):
    _, _, pristine = reproducible

    def message(*overrides: str) -> str:
        experiment = load_experiment(SMOKE, [*BASE, "--name=warm", *overrides])
        with pytest.raises(ConfigError) as error:
            read_sources(experiment, tmp_path / "warm")
        assert "\n" not in str(error.value)
        return str(error.value)

    missing = tmp_path / "nowhere"
    assert message(f"--search.warm_start=[{missing}]") == (
        f"search.warm_start[0] = {missing}: no sweep there (no {missing / 'experiment.yaml'})")
    assert message(f"--search.warm_start=[{pristine}]", "--train.width=8").startswith(
        f"search.warm_start[0] = {pristine} is another problem: train.width differs (4 there, "
        f"8 here)")
    assert "scheduler.max_epochs differs (2 there, 3 here)" in message(
        f"--search.warm_start=[{pristine}]", "--scheduler.max_epochs=3")
    assert "listed twice" in message(f"--search.warm_start=[{pristine}, {pristine}/]")


def test_the_same_warm_start_sources_give_the_same_trials(reproducible, tmp_path):
    """What the sampler is told is a function of the sources alone (so, seeded, its trials):
    read twice, the same trials in the same order. A narrower space leaves some out."""
    _, _, pristine = reproducible
    experiment = load_experiment(SMOKE, [*BASE, "--name=warm",
                                         f"--search.warm_start=[{pristine}]",
                                         "--space.batch_size={choice: [2, 4]}"])
    first, second = (read_sources(experiment, tmp_path)[0] for _ in range(2))
    assert [(t.params, t.values, t.intermediate_values, t.user_attrs) for t in first.trials] == \
        [(t.params, t.values, t.intermediate_values, t.user_attrs) for t in second.trials]
    assert all(t.params["batch_size"] in (2, 4) for t in first.trials)
    assert first.left_out.get("outside this sweep's space", 0) + len(first.trials) == FIRST


# ---- S3 storage ---------------------------------------------------------------------------------
@pytest.mark.slow  # two sweeps uploading to the bucket: ~60 s on 2 busy cores, over 20 s idle
def test_a_sweep_on_s3_storage_extends_from_the_bucket(ray_session, tmp_path, monkeypatch):
    """Ray's saved state and the trials live in the bucket (tests/s3.py's local S3): the
    extension rewrites the state there, the earlier trials stay untouched, the new one lands
    there too and nothing of tune/ in the run directory."""
    from tests.s3 import BUCKET, S3Server

    server = S3Server().start()
    try:
        server.make_bucket()
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, server.env()[key])
        uri = f"s3://{BUCKET}/ext?endpoint_override=127.0.0.1:{server.port}&scheme=http"
        first = run_experiment(load_experiment(SMOKE, [
            *BASE, f"--storage={uri}", "--name=s3ext", "--search.trials=2"]), tmp_path)
        before = {r.trial_id: r.rows for r in read_trials(storage_of(first.run_dir))}
        summary = extend_experiment(first.run_dir, 3, ["--space.lr={loguniform: [1e-4, 1e-2]}"])
        after = {r.trial_id: r.rows for r in read_trials(storage_of(summary.run_dir))}
        assert len(after) == 3 and all(after[t] == rows for t, rows in before.items())
        results = {k.split("/")[3] for k in server.keys(prefix="ext/s3ext/tune/")
                   if k.endswith("/result.json")}
        assert results == set(after) and not (summary.run_dir / "tune").exists()
        study = optuna.load_study(study_name="s3ext", storage=journal_storage(summary.run_dir))
        assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    finally:
        server.stop()


# ---- async mode ---------------------------------------------------------------------------------
def test_an_async_sweep_extended_runs_every_trial_once(runs):
    """Not the same trials as one sweep of 5 (tells and pruning follow the timing), but all 5,
    the first 3 untouched, every one told, the W&B mirror counting 5 runs of one sweep and its
    summary run saying where the sweep was extended."""
    from sweep.wandb_mirror.inspect import read_run

    first_total, total = 3, 5
    overrides = [*TINY, "--search.mode=async", f"--search.trials={first_total}",
                 "--wandb.enabled=true"]
    first = run_experiment(load_experiment(SMOKE, overrides), runs / "async")
    before = outcome(first)["trials"]
    summary = extend_experiment(first.run_dir, total)
    after = outcome(summary)["trials"]
    assert sorted(after) == list(range(total))
    for number in range(first_total):
        assert after[number] == before[number], f"trial {number} changed"
    for record in read_trials(storage_of(summary.run_dir)):
        epochs = [row["epoch"] for row in record.rows]
        assert epochs == sorted(set(epochs)), f"{record.trial_id} ran an epoch twice"
    study = load_study(summary.run_dir)
    assert len(study.trials) == total and all(t.state.is_finished() for t in study.trials)
    mirror = json.loads((summary.run_dir / "wandb" / "mirror.json").read_text())
    assert len(mirror["runs"]) == total
    sweep_config = yaml.safe_load((summary.run_dir / "wandb_sweep.yaml").read_text())
    assert sweep_config["run_cap"] == total
    summary_run = read_run(summary.run_dir / mirror["summary_run"]["dir"])
    assert summary_run.summary["extended_at"] == [first_total]


# ---- the rules alone (no Ray) -------------------------------------------------------------------
def test_an_extension_s_w_and_b_sweep_config_caps_the_new_total_and_searches_the_new_space(
        tmp_path):
    from sweep.runner import retarget_restored
    from sweep.wandb_mirror.callback import WandbMirrorCallback

    config = {"name": "smoke", "parameters": {"lr": {}, "batch_size": {}}, "run_cap": 16}
    mirror = WandbMirrorCallback({"sweep_config": config}, 1.0, None)
    extended = load_experiment(SMOKE, [*BASE, "--search.trials=24",
                                       "--space.lr={loguniform: [1.0e-4, 1.0e-2]}"])
    del extended.space["batch_size"]
    retarget_restored([mirror], extended, tmp_path)
    written = yaml.safe_load((tmp_path / "wandb_sweep.yaml").read_text())
    assert written == mirror.plan["sweep_config"] and written["run_cap"] == 24
    assert written["parameters"] == {"lr": {"distribution": "log_uniform_values",
                                            "min": 1e-4, "max": 1e-2}}


def test_w_and_b_hears_where_the_sweep_was_extended_and_what_warm_started_it(tmp_path):
    from sweep.wandb_mirror.history import sweep_history

    assert sweep_history(tmp_path) == {}
    (tmp_path / "extensions.json").write_text(json.dumps([
        {"from_trials": 16, "to_trials": 24}, {"from_trials": 24, "to_trials": 32,
                                                "space": {"changed": ["space.lr"]}}]))
    (tmp_path / "warm_start.json").write_text(json.dumps({"told": 5, "sources": [
        {"path": "runs/a", "experiment": "a", "told": 5, "not_told": {"failed there": 2}}]}))
    assert sweep_history(tmp_path) == {
        "extended_at": [16, 24], "space_changed_at": [24],
        "warm_start": {"told": 5, "sources": [{"path": "runs/a", "experiment": "a", "told": 5,
                                                "not_told": 2}]}}


def test_a_trial_fits_a_space_by_its_searched_and_fixed_settings():
    space = {"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [2, 4, 8, 16]}}
    fixed = {"lr": 1e-3, "batch_size": 4, "width": 4, "grad_clip": 1.0}
    assert fit_to_space({"lr": 1e-3, "batch_size": 16}, space, fixed) == (
        {"lr": 1e-3, "batch_size": 16}, "")
    assert fit_to_space({"lr": 0.05, "batch_size": 2}, space, fixed)[1] == \
        "lr=0.05 outside loguniform [0.0001, 0.01]"
    # an added dimension takes the trial's fixed value; a removed one must have been searched
    # at the value now fixed
    assert fit_to_space({"lr": 1e-3}, space, fixed)[0] == {"lr": 1e-3, "batch_size": 4}
    assert fit_to_space({"lr": 1e-3, "batch_size": 2, "grad_clip": 1.0},
                        {"lr": space["lr"], "batch_size": space["batch_size"]}, fixed)[0]
    assert fit_to_space({"lr": 1e-3, "grad_clip": 2.0}, {"lr": space["lr"]}, fixed)[1] == \
        "grad_clip=2.0 but now fixed at 1.0"
    assert fit_to_space({"amp": True}, {"amp": {"choice": [1]}}, {})[0] is None  # True != 1


def test_a_space_change_is_undone_by_the_next_that_holds_the_trial_again():
    """A trial outside one extension's space keeps its result in the mark: a later space that
    holds it again tells it again, as it was. Twice the same space changes nothing."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for lr, value in ((1e-3, 0.5), (5e-3, 0.7)):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr}, distributions={"lr": FloatDistribution(1e-3, 1e-2, log=True)},
            value=value, intermediate_values={1: value}))
    narrow = Respace({"lr": {"loguniform": [1e-3, 2e-3]}}, {"lr": 1e-3})
    once = [narrow(t) for t in study.trials]
    assert [t.state for t in once] == [TrialState.COMPLETE, TrialState.FAIL]
    assert narrow.outside == {1: "lr=0.005 outside loguniform [0.001, 0.002]"}
    twice = [narrow(t) for t in once]
    assert [(t.state, t.user_attrs) for t in twice] == [(t.state, t.user_attrs) for t in once]
    wide = Respace({"lr": {"loguniform": [1e-4, 1e-2]}}, {"lr": 1e-3})
    back = [wide(t) for t in twice]
    assert [(t.state, t.value, t.intermediate_values, t.user_attrs) for t in back] == [
        (t.state, t.value, t.intermediate_values, t.user_attrs) for t in study.trials]
    assert all(t.distributions == {"lr": FloatDistribution(1e-4, 1e-2, log=True)} for t in back)


def test_another_problem_is_found_by_the_settings_that_define_it():
    base = load_experiment(SMOKE, BASE)
    assert problem_difference(base, base) is None
    # speed knobs and torch threads differ by machine, not by problem; the space may differ
    other_machine = load_experiment(SMOKE, [*BASE, "--train.num_workers=2",
                                            "--resources.cpus=2", "--search.trials=3",
                                            "--space.lr={uniform: [0.001, 0.002]}"])
    assert problem_difference(other_machine, base) is None
    assert problem_difference(load_experiment(SMOKE, [*BASE, "--search.seeds=2"]), base) == (
        "search.seeds", 2, 1)


# ---- the searcher's state alone (no Ray) --------------------------------------------------------
def saved(total: int, lag: int, asked: int, told: int, early: dict | None) -> dict:
    state = {"_total": total, "_lag": lag, "_order": {f"t{n}": n for n in range(asked)},
             "_told": told, "_ended": {}}
    if early is not None:
        state["_released_early"] = early
    return state


def test_the_tells_released_at_the_last_ask_are_taken_back():
    state = saved(3, 3, asked=3, told=3, early={1: ("t1", {}, False), 2: ("t2", None, True)})
    assert take_back_early_tells(state, 5) == [1, 2]
    assert state["_total"] == 5 and state["_told"] == 1
    assert state["_ended"] == {1: ("t1", {}, False), 2: ("t2", None, True)}
    assert state["_released_early"] == {}


def test_nothing_is_taken_back_without_lag_or_beyond_the_total():
    async_state = saved(3, 0, asked=3, told=0, early={})
    assert take_back_early_tells(async_state, 5) == [] and async_state["_total"] == 5
    assert take_back_early_tells(saved(5, 3, 5, 5, {}), 5) == []  # not above: unchanged
    old = saved(3, 3, asked=3, told=3, early=None)  # saved before the record existed
    assert take_back_early_tells(old, 5) is None and old["_total"] == 5


def test_a_saved_optuna_search_asks_from_the_space_and_sampler_put_in_its_state(tmp_path):
    """The private state `extend --space.KEY=...` rewrites (docs/PRIVATE_APIS.md): Ray's
    OptunaSearch saves its __dict__, asks with `_space` and samples with its study's sampler."""
    import pickle

    from optuna.distributions import CategoricalDistribution
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    old = {"batch_size": CategoricalDistribution([2, 4])}
    searcher = OptunaSearch(space=old, metric="val_dice", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=0))
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "state.pkl"))
    state = pickle.loads((tmp_path / "state.pkl").read_bytes())
    new = {"batch_size": old["batch_size"],
           "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    sampler = optuna.samplers.RandomSampler(seed=7)
    use_space(state, new, sampler)
    (tmp_path / "state.pkl").write_bytes(pickle.dumps(state))
    restored = OptunaSearch(space=old, metric="val_dice", mode="max")
    restored.restore(str(tmp_path / "state.pkl"))
    suggestion = restored.suggest("t1")
    asked = restored._ot_study.trials[-1]
    assert suggestion["batch_size"] in (2, 4) and 1e-4 <= suggestion["lr"] <= 1e-2
    assert asked.distributions == new and restored._ot_study.sampler is restored._sampler
    expected = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    assert expected.ask(new).params == suggestion  # the fresh sampler drew it
    # Why a trial outside a changed space keeps no params (sweep/respace.py): the storage
    # refuses a parameter whose choices differ from an earlier trial's, whatever its state.
    with pytest.raises(ValueError, match="dynamic value space"):
        restored._ot_study.ask({"batch_size": CategoricalDistribution([16, 32])})


# ---- async ASHA after a restore (no Ray run) ----------------------------------------------------
def test_async_asha_gets_a_restored_trial_s_rung_values_back(tmp_path):
    """Without them an extension's first new trial would pass every rung unopposed."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from sweep.resumed_asha import ResumedASHA

    folder = tmp_path / "t0"
    folder.mkdir()
    (folder / "result.json").write_text("".join(
        json.dumps({"epoch": e, "val_loss": v}) + "\n" for e, v in ((1, 0.2), (2, 0.1))))
    asha = ResumedASHA(time_attr="epoch", metric="val_loss", mode="min", max_t=4,
                       grace_period=1, reduction_factor=2)
    restored = SimpleNamespace(trial_id="t0", path=str(folder), has_reported_at_least_once=True)
    new = SimpleNamespace(trial_id="t1", path=None, has_reported_at_least_once=False)
    asha.on_trial_add(None, restored)
    asha.on_trial_add(None, new)
    assert asha.on_trial_result(None, new, {"epoch": 1, "val_loss": 0.9}) == TrialScheduler.STOP
