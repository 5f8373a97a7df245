"""Issue 24, items 2-4: a run directory knows what its sweep started from.

- A second `run` finds a sweep already in the run directory whatever `--storage` it names, and
  refuses in one line (item 2).
- `resume` refuses an edited experiment.yaml, naming the keys that changed (item 3).
- `resume` refuses a data set that changed since the sweep started; a decoded cache edited in
  place is rebuilt, not read; a mask value the folder check never saw is one line naming the
  file (item 4).

Every refusal happens before Ray starts: ``start_ray`` is replaced by a stub that raises
``RayStarted``, so these tests never start a second Ray beyond the shared smoke sweep."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from data_pipeline import DataFolderError, load_data
from data_pipeline import cache as cache_module
from sweep import runner
from sweep.__main__ import main
from sweep.experiment import load_experiment
from sweep.fingerprint import changed_keys
from sweep.rundir import (
    BEST_CHECKPOINT,
    DATA_FINGERPRINT_FILE,
    EXPERIMENT_FILE,
    EXPERIMENT_FINGERPRINT_FILE,
    LOCK_FILE,
    STUDY_FILE,
    TUNE_DIR,
)
from training.settings import ConfigError

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.yaml"


class RayStarted(Exception):
    """Raised by the stub start_ray: the command got past every check before Ray."""


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(experiment):
        raise RayStarted

    monkeypatch.setattr(runner, "start_ray", refuse)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != LOCK_FILE}


# ---- item 2: a second run with another --storage -------------------------------------------
def finished_sweep(run_dir: Path, storage: str = "") -> Path:
    """A run directory as a finished sweep leaves it (no Ray needed: `run` must refuse before
    reading more than this): experiment.yaml, the study, best.pth, and trial folders in the
    storage experiment.yaml names."""
    experiment = load_experiment(SMOKE, [f"--storage={storage}"] if storage else [])
    run_dir.mkdir(parents=True)
    (run_dir / EXPERIMENT_FILE).write_text(yaml.safe_dump(experiment.to_dict()))
    (run_dir / STUDY_FILE).write_text("{}\n")
    (run_dir / BEST_CHECKPOINT).write_bytes(b"the old sweep's best model")
    trials = (Path(storage) / run_dir.name if storage else run_dir) / TUNE_DIR / "trial1"
    trials.mkdir(parents=True)
    (trials / "result.json").write_text('{"val_dice": 0.8}\n')
    return trials.parent


@pytest.mark.parametrize("old, new", [("", "elsewhere"), ("old", ""), ("old", "elsewhere")])
def test_a_run_with_another_storage_refuses_a_finished_sweep(tmp_path, no_ray, capsys, old,
                                                             new):
    runs = tmp_path / "runs"
    old_storage = str(tmp_path / old) if old else ""
    finished_sweep(runs / "smoke", old_storage)
    before = snapshot(tmp_path)
    new_storage = str(tmp_path / new) if new else ""
    experiment = load_experiment(SMOKE, [f"--storage={new_storage}"] if new else [])
    with pytest.raises(ConfigError, match="already holds a sweep"):
        runner.run_experiment(experiment, runs)
    argv = ["run", str(SMOKE), "--runs-dir", str(runs)] + ([f"--storage={new_storage}"]
                                                           if new else [])
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "sweep resume" in line and "--fresh" in line, line
    assert snapshot(tmp_path) == before  # nothing written, nothing removed
    assert not new or not (tmp_path / new / "smoke").exists()


def test_fresh_clears_the_old_storage_too(tmp_path, no_ray):
    runs = tmp_path / "runs"
    old_tune = finished_sweep(runs / "smoke", str(tmp_path / "old"))
    experiment = load_experiment(SMOKE, [f"--storage={tmp_path / 'elsewhere'}"])
    with pytest.raises(RayStarted):  # past the check: it starts over
        runner.run_experiment(experiment, runs, fresh=True)
    assert not old_tune.exists()  # no orphaned trial folders
    assert not (runs / "smoke" / BEST_CHECKPOINT).exists()


def test_a_run_dir_without_a_sweep_still_runs(tmp_path, no_ray):
    """A run that failed before any trial (experiment.yaml only) is nothing to protect."""
    run_dir = tmp_path / "runs" / "smoke"
    run_dir.mkdir(parents=True)
    shutil.copy(SMOKE, run_dir / EXPERIMENT_FILE)
    with pytest.raises(RayStarted):
        runner.run_experiment(load_experiment(SMOKE), tmp_path / "runs")


# ---- item 3: an edited experiment.yaml on resume -------------------------------------------
def test_changed_keys_names_sections_and_keys():
    saved = {"name": "a", "train": {"width": 8, "lr": 0.001},
             "space": {"lr": {"loguniform": [0.001, 0.01]}}, "scheduler": {"max_epochs": 3}}
    now = {"name": "a", "train": {"width": 16, "lr": 0.001},
           "space": {"lr": {"loguniform": [0.001, 0.1]}, "batch_size": {"choice": [2]}},
           "scheduler": {"max_epochs": 6}}
    assert changed_keys(saved, now) == ["train.width", "space.lr", "space.batch_size",
                                        "scheduler.max_epochs"]
    assert changed_keys(saved, json.loads(json.dumps(saved))) == []
    assert changed_keys({"train": {"crop": 0}}, {"train": {"crop": 0.0}}) == ["train.crop"]


def test_a_run_records_its_fingerprints_and_an_unchanged_resume_passes(run_copy, no_ray):
    assert (run_copy / EXPERIMENT_FINGERPRINT_FILE).is_file()
    assert (run_copy / DATA_FINGERPRINT_FILE).is_file()
    with pytest.raises(RayStarted):
        runner.resume_experiment(run_copy)


def test_resume_refuses_an_edited_experiment_naming_the_keys(run_copy, no_ray, capsys):
    path = run_copy / EXPERIMENT_FILE
    values = yaml.safe_load(path.read_text())
    values["train"]["width"] = 16
    values["scheduler"]["max_epochs"] = 6
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    before = snapshot(run_copy)
    with pytest.raises(ConfigError, match="train.width, scheduler.max_epochs"):
        runner.resume_experiment(run_copy)
    assert main(["resume", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "train.width" in line and "scheduler.max_epochs" in line, line
    assert snapshot(run_copy) == before


def test_an_older_run_dir_without_fingerprints_resumes_and_records_them(run_copy, no_ray):
    for name in (EXPERIMENT_FINGERPRINT_FILE, DATA_FINGERPRINT_FILE):
        (run_copy / name).unlink(missing_ok=True)
    with pytest.raises(RayStarted):
        runner.resume_experiment(run_copy)
    assert (run_copy / EXPERIMENT_FINGERPRINT_FILE).is_file()
    assert (run_copy / DATA_FINGERPRINT_FILE).is_file()


# ---- item 4: the data set changed between a kill and the resume --------------------------------
def write_mask(path: Path, size: int, seed: int, values=(0, 255)) -> None:
    mask = np.full((size, size), values[0], np.uint8)
    row = 4 + seed % (size - 8)
    mask[row:row + 3, 2:size - 2] = values[1]
    Image.fromarray(mask).save(path)


def make_folder(root: Path, images: int = 16, size: int = 32, values=(0, 255)) -> Path:
    (root / "imgs").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(images):
        pixels = np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "imgs" / f"img{i:02d}.png")
        write_mask(root / "masks" / f"img{i:02d}_mask.png", size, i, values)
    return root


def test_resume_refuses_masks_replaced_since_the_sweep_started(ray_session, tmp_path,
                                                                monkeypatch, capsys):
    folder = make_folder(tmp_path / "data")
    experiment = load_experiment(SMOKE, [f"--train.data_dir={folder}", "--search.trials=1",
                                         "--search.startup_trials=1",
                                         "--scheduler.max_epochs=1"])
    run_dir = runner.run_experiment(experiment, tmp_path / "runs").run_dir
    for i in range(12):  # same names, same image size, other cracks
        write_mask(folder / "masks" / f"img{i:02d}_mask.png", 32, i + 7)
    before = snapshot(run_dir)
    monkeypatch.setattr(runner, "start_ray", lambda experiment: (_ for _ in ()).throw(
        RayStarted()))
    with pytest.raises(ConfigError, match=r"changed since the sweep started: 12 file\(s\)"):
        runner.resume_experiment(run_dir)
    assert main(["resume", str(run_dir)]) == 2
    line = one_error_line(capsys)
    assert str(folder) in line and "img00_mask.png" in line, line
    assert snapshot(run_dir) == before


def test_a_cache_file_edited_in_place_is_rebuilt_not_read(tmp_path):
    folder = make_folder(tmp_path / "data", images=4)
    cache_dir = str(tmp_path / "cache")
    good = load_data(str(folder), cache_dir=cache_dir)
    expected = np.array(good.masks)
    masks_file = Path(good.source["cache"]) / cache_module.MASKS
    del good
    with open(masks_file, "r+b") as handle:  # one mask pixel, same length: headers still fine
        handle.seek(-5, 2)
        handle.write(b"\x07")
    reloaded = load_data(str(folder), cache_dir=cache_dir)
    assert np.array_equal(reloaded.masks, expected)
    assert int(np.max(reloaded.masks)) <= 1


def test_a_mask_value_the_check_never_saw_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """A mask rewritten between the folder check and its decode (0/1 masks, then a 255): it
    used to decode to class 2 of a 2-class set, and training died with a traceback."""
    folder = make_folder(tmp_path / "data", images=4, values=(0, 1))
    scan = cache_module.scan_folder

    def scan_then_change(*args, **kwargs):
        result = scan(*args, **kwargs)
        write_mask(folder / "masks" / "img02_mask.png", 32, 2, values=(0, 255))
        return result

    monkeypatch.setattr(cache_module, "scan_folder", scan_then_change)
    with pytest.raises(DataFolderError) as caught:
        load_data(str(folder), cache_dir=str(tmp_path / "cache"))
    (fault,) = caught.value.faults
    assert "img02_mask.png" in fault and "255" in fault, fault
