"""Every setting explains itself: one description per field, shown by `train --help` and in
docs/SETTINGS.md, which must be exactly what `python -m sweep settings` prints."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sweep.__main__ import main
from sweep.cli.settings import reference
from sweep.experiment import (
    ConfirmSettings,
    Experiment,
    ResourceSettings,
    SchedulerSettings,
    SearchSettings,
)
from sweep.wandb_mirror.settings import WandbSettings
from training.config import TrainConfig
from training.settings import help_of

DOC = Path(__file__).resolve().parents[1] / "docs" / "SETTINGS.md"
SCHEMAS = [TrainConfig, Experiment, SearchSettings, SchedulerSettings, ResourceSettings,
           ConfirmSettings, WandbSettings]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda cls: cls.__name__)
def test_every_field_has_a_one_line_description(schema):
    for field in dataclasses.fields(schema):
        text = help_of(field)
        assert text.strip(), f"{schema.__name__}.{field.name} has no description"
        assert "\n" not in text, f"{schema.__name__}.{field.name}: one line please"


def test_train_help_shows_each_fields_description(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps to the terminal, even at hyphens
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert " ".join(help_of(field).split()) in text, field.name
    assert "Downscaling factor of the images (default: 1.0)" in text
    assert "Share of the data held out for validation, in % (default: 10.0)" in text


def test_the_reference_lists_every_key_with_its_description():
    text = reference()
    for field in dataclasses.fields(TrainConfig):
        assert f"| `{field.name}` | " in text and help_of(field).replace("|", "\\|") in text
    for section in ("search", "scheduler", "resources", "confirm", "wandb"):
        schema = WandbSettings if section == "wandb" else type(getattr(Experiment(), section))
        for field in dataclasses.fields(schema):
            assert f"| `{section}.{field.name}` | " in text, f"{section}.{field.name}"


def test_committed_settings_doc_is_what_the_generator_prints(capsys):
    assert main(["settings"]) == 0
    printed = capsys.readouterr().out
    assert printed == reference()
    assert DOC.read_text() == printed, "docs/SETTINGS.md is stale: run `make settings-doc`"
