"""Experiment files: the shipped ones load, overrides apply, and every kind of mistake is one
line naming key, value and file, with exit code 2, before Ray starts."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.__main__ import main
from sweep.experiment import Experiment, load_experiment
from training.settings import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SMOKE = EXPERIMENTS / "smoke.yaml"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_experiments_load_and_round_trip(path):
    experiment = load_experiment(path)
    assert experiment.name == path.stem
    assert {"lr", "batch_size"} <= set(experiment.space) and "seed" not in experiment.space
    assert experiment.search.mode == "reproducible"  # on by default for the shipped ones
    # experiment.yaml of a run is to_dict(); it must load back to the same experiment.
    again = Experiment.from_dict(yaml.safe_load(yaml.safe_dump(experiment.to_dict())), "again")
    assert again == experiment


def test_quickstart_is_cpu_sized_and_gpu_profiles_are_full_width():
    quick = load_experiment(EXPERIMENTS / "quickstart.yaml")
    assert quick.search.trials >= 12 and quick.train.device == "cpu"
    assert quick.resources.gpus == 0 and "num_workers" in quick.space
    for name in ("crack_unet", "crack_segnet"):
        gpu = load_experiment(EXPERIMENTS / f"{name}.yaml")
        assert gpu.train.width == 64 and gpu.train.synthetic_size >= 256
        assert 0 < gpu.resources.gpus <= 1


def test_overrides_reach_nested_sections_and_the_training_settings():
    experiment = load_experiment(SMOKE, ["--search.trials=2", "--train.width=16",
                                         "--space.lr={uniform: [0.001, 0.002]}"])
    assert experiment.search.trials == 2 and experiment.train.width == 16
    assert experiment.distributions()["lr"] == FloatDistribution(0.001, 0.002)


def test_space_becomes_optuna_distributions_with_inclusive_int_bounds():
    dists = load_experiment(SMOKE).distributions()
    assert dists["lr"] == FloatDistribution(1e-3, 1e-2, log=True)
    assert dists["batch_size"] == CategoricalDistribution([2, 4, 8])
    dists = load_experiment(SMOKE, ["--space.width={int: [4, 8]}"]).distributions()
    assert dists["width"] == IntDistribution(4, 8)


def test_the_seed_is_never_searched_and_seeds_are_replicates():
    with pytest.raises(ConfigError, match="space.seed .*noise.*search.seeds"):
        load_experiment(SMOKE, ["--space.seed={int: [0, 99]}"])
    experiment = load_experiment(SMOKE, ["--search.seeds=3", "--train.seed=5"])
    assert experiment.seeds() == [5, 6, 7]
    with pytest.raises(ConfigError, match="search.seeds"):
        load_experiment(SMOKE, ["--search.seeds=0"])


def test_search_mode_is_checked_and_a_time_budget_needs_async():
    with pytest.raises(ConfigError, match="search.mode"):
        load_experiment(SMOKE, ["--search.mode=sync"])
    with pytest.raises(ConfigError, match="time_budget_s.*async"):
        load_experiment(SMOKE, ["--search.time_budget_s=60"])
    assert load_experiment(SMOKE, ["--search.time_budget_s=60", "--search.mode=async"])


def test_trial_config_applies_params_epochs_and_pinned_threads(tmp_path):
    experiment = load_experiment(SMOKE)
    config = experiment.trial_config({"lr": 0.004, "batch_size": 8, "seed": 3},
                                     out_dir=str(tmp_path))
    assert (config.lr, config.batch_size, config.seed) == (0.004, 8, 3)
    assert config.epochs == experiment.scheduler.max_epochs
    assert config.threads == 1  # pinned from resources.cpus, so num_workers never changes results
    assert config.width == experiment.train.width


BAD = {
    "typo in a section": ({"search": {"trails": 4}}, ["search.trails"]),
    "typo at the top": ({"serach": {}}, ["serach"]),
    "wrong type": ({"search": {"trials": "ten"}}, ["search.trials", "'ten'"]),
    "empty range": ({"space": {"lr": {"loguniform": [0.01, 0.001]}}},
                    ["space.lr.loguniform", "[0.01, 0.001]", "non-empty range"]),
    "empty choice": ({"space": {"batch_size": {"choice": []}}}, ["space.batch_size.choice", "[]"]),
    "unknown model fixed": ({"train": {"model": "resnet"}}, ["model", "'resnet'", "unknown"]),
    "unknown model searched": ({"space": {"model": {"choice": ["unet", "segnett"]}}},
                               ["space.model.choice[1]", "'segnett'", "unknown"]),
    "unknown setting searched": ({"space": {"learning_rate": {"uniform": [0.1, 0.2]}}},
                                 ["space.learning_rate"]),
    "wrong distribution kind": ({"space": {"lr": {"normal": [0, 1]}}}, ["space.lr", "normal"]),
    "int range on a float": ({"space": {"lr": {"int": [1, 2]}}}, ["space.lr.int", "[1, 2]"]),
    "wrong value type in choice": ({"space": {"batch_size": {"choice": [4, "big"]}}},
                                   ["space.batch_size.choice[1]", "'big'"]),
    "log range through zero": ({"space": {"lr": {"loguniform": [0, 0.1]}}},
                               ["space.lr.loguniform", "[0, 0.1]"]),
    "epochs set by the sweep": ({"train": {"epochs": 9}}, ["train.epochs", "9", "max_epochs"]),
    "grace beyond max": ({"scheduler": {"grace_period": 99}}, ["scheduler.grace_period", "99"]),
    "unknown sampler": ({"search": {"sampler": "cmaes"}}, ["search.sampler", "cmaes", "gp"]),
    # A test seam, not a user setting: tests set CRACK_SWEEP_FAULTS instead (tests/README.md).
    "faults section": ({"faults": {"oom_when": {"batch_size": 2}}}, ["unknown key faults"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_experiment_file_is_one_line_exit_2(case, tmp_path, capsys):
    change, expected = BAD[case]
    values = yaml.safe_load(SMOKE.read_text())
    for section, update in change.items():
        values[section] = ({**values[section], **update}
                           if isinstance(values.get(section), dict) else update)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    assert main(["run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and message.startswith("error: ")
    assert str(path) in message, message
    for part in expected:
        assert part in message, message
    assert not (tmp_path / "runs").exists()  # rejected before anything ran


@pytest.mark.parametrize("flag, expected", [
    ("--search.trials=many", ["search.trials", "'many'", "command-line"]),
    ("--search.trails=4", ["search.trails", "command-line"]),
    ("--train.model=unet3", ["'unet3'", "unknown"]),
])
def test_bad_override_is_one_line_exit_2(flag, expected, tmp_path, capsys):
    assert main(["run", str(SMOKE), flag, "--runs-dir", str(tmp_path)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and str(SMOKE) in message
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize("argv, expected", [
    (["--search.trials", "4"], "'--search.trials' is not an override of the form --key=value"),
    (["stray"], "'stray' is not an override"),
])
def test_run_arguments_that_are_not_overrides_are_one_line_exit_2(argv, expected, tmp_path,
                                                                  capsys):
    assert main(["run", str(SMOKE), *argv, "--runs-dir", str(tmp_path / "runs")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and expected in message, message
    assert not (tmp_path / "runs").exists()


def test_unknown_flags_of_other_commands_stay_argparse_errors(capsys):
    with pytest.raises(SystemExit) as done:
        main(["resume", "runs/x", "--search.trials=4"])
    assert done.value.code == 2
    assert "unrecognized arguments: --search.trials=4" in capsys.readouterr().err


def test_missing_and_empty_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load_experiment(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty.yaml: empty experiment file"):
        load_experiment(tmp_path / "empty.yaml")


def test_a_run_saved_by_an_older_version_still_loads(tmp_path):
    """Older runs' experiment.yaml holds `faults:` (now the tests' CRACK_SWEEP_FAULTS): resume
    and confirm read it back; a user's own experiment file may not use the key."""
    from sweep.experiment import load_saved_experiment

    saved = yaml.safe_load(SMOKE.read_text())
    saved["faults"] = {"oom_when": {}, "oom_epoch": 1, "error_when": {}, "error_epoch": 2}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(saved))
    assert load_saved_experiment(path).name == saved["name"]
    with pytest.raises(ConfigError, match="unknown key faults"):
        load_experiment(path)


def test_samplers_are_built_as_named_and_the_default_is_optuna_5s_tpe():
    import optuna

    from sweep.search import make_sampler

    search = load_experiment(SMOKE).search
    default = make_sampler(search)
    # Behaviour kept: Optuna 5's TPESampler() is multivariate with a constant liar already.
    assert isinstance(default, optuna.samplers.TPESampler)
    assert default._multivariate is True and default._constant_liar is True
    assert default._n_startup_trials == search.startup_trials
    search.sampler, search.multivariate, search.constant_liar = "tpe", False, False
    assert make_sampler(search)._multivariate is False
    search.sampler = "random"
    assert isinstance(make_sampler(search), optuna.samplers.RandomSampler)
    search.sampler = "gp"
    assert isinstance(make_sampler(search), optuna.samplers.GPSampler)


def test_a_space_of_speed_knobs_alone_is_refused(tmp_path):
    """num_workers and pin_memory are fixed by the speed probe and leave the space: a space of
    them alone would leave TPE nothing to search."""
    values = yaml.safe_load(SMOKE.read_text())
    values["space"] = {"num_workers": {"choice": [0, 1]}}
    path = tmp_path / "knobs.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="besides num_workers and pin_memory"):
        load_experiment(path)
