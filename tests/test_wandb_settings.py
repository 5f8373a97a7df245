"""The experiment's `wandb:` section and the W&B sweep config built from an experiment."""
from __future__ import annotations

import pytest
import yaml

from sweep.wandb_mirror.settings import WandbSettings, has_api_key, resolve_mode
from sweep.wandb_mirror.sweep_config import build_sweep_config, hyperband, write_sweep_yaml
from sweep.wandb_mirror.val_images import val_panel_reporter
from training.settings import ConfigError


def test_defaults_are_valid_and_offline_without_a_key():
    settings = WandbSettings.from_dict({}, "exp.yaml")
    assert settings.image_epochs == [1, -1] and settings.image_count == 4
    assert resolve_mode(settings, {"HOME": "/nonexistent"}) == "offline"


@pytest.mark.parametrize("values, message", [
    ({"projekt": "x"}, "unknown key wandb.projekt"),
    ({"mode": "cloud"}, "wandb.mode = 'cloud' should be auto | online | offline | disabled"),
    ({"image_epochs": [0]}, "wandb.image_epochs[0] = 0 should be an epoch"),
    ({"image_epochs": ["last"]}, "wandb.image_epochs[0] = 'last' should be an integer"),
    ({"image_count": 17}, "wandb.image_count = 17 should be between 0 and 16"),
    ({"enabled": "yes"}, "wandb.enabled = 'yes' should be true or false"),
])
def test_bad_settings_name_the_key_and_file(values, message):
    with pytest.raises(ConfigError) as error:
        WandbSettings.from_dict(values, "experiments/x.yaml")
    assert str(error.value).startswith("experiments/x.yaml: ")
    assert message in str(error.value)


@pytest.mark.parametrize("values, environ, expected", [
    ({"enabled": False}, {"WANDB_API_KEY": "k"}, "disabled"),
    ({}, {"WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}, "disabled"),
    ({}, {"WANDB_API_KEY": "k"}, "online"),
    ({"mode": "offline"}, {"WANDB_API_KEY": "k"}, "offline"),
    ({"mode": "online"}, {"WANDB_MODE": "offline", "WANDB_API_KEY": "k"}, "offline"),
    ({"mode": "online"}, {}, "online"),  # tries; the writer falls back offline if it cannot
])
def test_mode_resolution(values, environ, expected):
    environ = {"HOME": "/nonexistent", **environ}
    assert resolve_mode(WandbSettings.from_dict(values), environ) == expected


def test_api_key_found_in_netrc(tmp_path):
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert has_api_key({"HOME": str(tmp_path)})
    assert not has_api_key({"HOME": str(tmp_path), "WANDB_BASE_URL": "https://wandb.example"})


def test_project_and_entity_fall_back_to_environment(monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    assert WandbSettings.from_dict({}).resolved_project() == "from-env"
    assert WandbSettings.from_dict({"project": "p"}).resolved_project() == "p"
    assert WandbSettings.from_dict({}).resolved_entity() is None


def test_search_space_metric_and_asha_translate_to_a_wandb_sweep(tmp_path):
    space = {"lr": {"loguniform": [1e-4, 1e-2]}, "batch_size": {"choice": [2, 4, 8]},
             "seed": {"randint": [0, 1000]}, "width": [4, 8],
             "momentum": {"type": "quniform", "low": 0.8, "high": 0.99, "step": 0.01},
             "num_workers": {"int": [0, 2]}}
    config = build_sweep_config("quickstart", space, "val_dice", "max",
                                scheduler={"max_t": 8, "grace_period": 2, "reduction_factor": 3},
                                trials=12, constants={"model": "unet"})
    assert config["method"] == "bayes" and config["run_cap"] == 12  # TPE: W&B's closest
    assert "Optuna (TPE)" in config["description"]
    shipped = build_sweep_config("quickstart", space, "val_dice", "max", sampler="random")
    assert shipped["method"] == "random" and "RandomSampler" in shipped["description"]
    from sweep.experiment import SAMPLERS

    for sampler in SAMPLERS:  # every sampler an experiment may name has a W&B sweep config
        mirrored = build_sweep_config("quickstart", space, "val_dice", "max", sampler=sampler)
        assert mirrored["method"] in ("random", "bayes") and "Optuna (" in mirrored["description"]
    assert config["metric"] == {"name": "val_dice", "goal": "maximize"}
    assert config["early_terminate"] == {"type": "hyperband", "min_iter": 2, "eta": 3}
    assert config["parameters"] == {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "batch_size": {"values": [2, 4, 8]},
        "seed": {"distribution": "int_uniform", "min": 0, "max": 999},  # randint excludes 1000
        "width": {"values": [4, 8]},
        "momentum": {"distribution": "q_uniform", "min": 0.8, "max": 0.99, "q": 0.01},
        "num_workers": {"distribution": "int_uniform", "min": 0, "max": 2},
        "model": {"value": "unet"},
    }
    path = write_sweep_yaml(tmp_path / "wandb_sweep.yaml", config)
    assert yaml.safe_load(path.read_text()) == config


def test_untranslatable_search_space_is_a_one_line_error():
    with pytest.raises(ConfigError, match="lr has kind 'sample_from'"):
        build_sweep_config("x", {"lr": {"sample_from": [1, 2]}}, "val_dice", "max")


@pytest.mark.parametrize("factor, eta", [(1.5, 2), (2, 2), (2.7, 3), (4, 4)])
def test_hyperband_eta_is_an_integer_of_at_least_two(factor, eta):
    assert hyperband({"grace_period": 1, "reduction_factor": factor})["eta"] == eta


def test_wandb_mode_disabled_turns_the_validation_panels_off(monkeypatch):
    section = {"mode": "offline", "image_count": 2}
    assert val_panel_reporter(section, data=None, max_epochs=3) is not None
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert val_panel_reporter(section, data=None, max_epochs=3) is None
