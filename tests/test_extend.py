"""`extend`: a sweep of 5 trials extended to 6 gives, in reproducible mode, the 6 trials one sweep
of 6 gives (trials, statuses, metrics, study, winner), at concurrency 3 with lag 3. The 5-trial
sweep told trials 3 and 4 at its end; one sweep of 6 asks trial 5 having told trials 0..2 only.
Trial 4 is the best of the five (sampler seed 0), so TPE would suggest another trial 5 if the
extension did not take those tells back (sweep/extend.py; checked: without it, trial 5
differs). In async mode it runs every trial once. And the refusals: one line, nothing changed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from sweep.experiment import load_experiment
from sweep.extend import read_extensions
from sweep.rundir import journal_storage, read_trials, storage_of
from sweep.runner import extend_experiment, resume_experiment, run_experiment
from sweep.searcher_state import take_back_early_tells
from tests.test_sweep_repro import SMOKE, TINY, outcome
from training.settings import ConfigError

FIRST, TOTAL = 5, 6  # TINY: 5 trials, concurrency 3, lag 3, TPE from the second trial


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    return tmp_path_factory.mktemp("extend")


@pytest.fixture(scope="module")
def reproducible(runs):
    """One sweep of 6 trials and one of 5 (the latter also copied, untouched, for refusals)."""
    whole = run_experiment(load_experiment(SMOKE, [*TINY, f"--search.trials={TOTAL}"]),
                           runs / "whole")
    part = run_experiment(load_experiment(SMOKE, [*TINY, f"--search.trials={FIRST}"]),
                          runs / "part")
    shutil.copytree(part.run_dir, runs / "pristine" / "smoke")
    return outcome(whole), part.run_dir, runs / "pristine" / "smoke"


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
    # The records say 5, and where the sweep grew.
    assert yaml.safe_load((run_dir / "experiment.yaml").read_text())["search"]["trials"] == TOTAL
    assert json.loads((run_dir / "experiment_fingerprint.json").read_text())["search"][
        "trials"] == TOTAL
    assert [(e["from_trials"], e["to_trials"]) for e in read_extensions(run_dir)] == [
        (FIRST, TOTAL)]


def test_resume_still_refuses_an_edited_experiment_after_an_extension(reproducible, tmp_path):
    _, run_dir, _ = reproducible
    copy = shutil.copytree(run_dir, tmp_path / "smoke")
    path = copy / "experiment.yaml"
    path.write_text(path.read_text().replace(f"trials: {TOTAL}", "trials: 9"))
    with pytest.raises(ConfigError, match=r"search\.trials changed \(search\.trials: 6 -> 9\)"):
        resume_experiment(copy)


def refused(run_dir: Path, trials: int) -> str:
    with pytest.raises(ConfigError) as error:
        extend_experiment(run_dir, trials)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_extend_refuses_in_one_line_and_changes_nothing(reproducible, tmp_path):
    _, _, pristine = reproducible
    copy = shutil.copytree(pristine, tmp_path / "smoke")
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert "already has a total of 5 trials" in refused(copy, FIRST)
    assert "must be above it" in refused(copy, 2)
    path = copy / "experiment.yaml"
    path.write_text(path.read_text().replace("width: 4", "width: 8"))
    assert refused(copy, TOTAL).startswith(
        "extend changes only search.trials; train.width changed")
    path.write_bytes(before["experiment.yaml"])
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()
            and p.name != "sweep.lock"} == {k: v for k, v in before.items() if k != "sweep.lock"}
    assert "no sweep to extend here (no experiment.yaml)" in refused(tmp_path / "empty", TOTAL)
    shutil.rmtree(copy / "tune")
    assert "no sweep to extend here (no tune/ folder" in refused(copy, TOTAL)


def test_the_command_line_refusal_is_one_line(reproducible, tmp_path, capsys):
    from sweep.__main__ import main

    _, _, pristine = reproducible
    assert main(["extend", str(pristine), "--trials", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already has a total of 5" in err and "\n" not in err


def test_an_async_sweep_extended_runs_every_trial_once(runs):
    """Not the same trials as one sweep of 5 (tells and pruning follow the timing), but all 5,
    the first 3 untouched, every one told, the W&B mirror counting 5 runs of one sweep."""
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
    study = optuna.load_study(study_name="smoke", storage=journal_storage(summary.run_dir))
    assert len(study.trials) == total and all(t.state.is_finished() for t in study.trials)
    mirror = json.loads((summary.run_dir / "wandb" / "mirror.json").read_text())
    assert len(mirror["runs"]) == total
    sweep_config = yaml.safe_load((summary.run_dir / "wandb_sweep.yaml").read_text())
    assert sweep_config["run_cap"] == total


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
