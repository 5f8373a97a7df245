"""Seeds trained side by side (training/replicates.py): each seed's numbers are exactly those
of that seed trained alone, and the report gets their mean, std and per-seed values."""
import statistics

import pytest

from data_pipeline import load_data
from tests.helpers import results_only, tiny_config
from training.loop import train
from training.replicates import train_replicates


@pytest.fixture(scope="module")
def data():
    return load_data(synthetic_images=20, synthetic_size=32)


def test_lockstep_seeds_train_as_they_would_alone(tmp_path, data):
    alone = [train(tiny_config(tmp_path / f"alone{s}", seed=s), data) for s in (3, 4)]
    reports = []
    together = train_replicates([tiny_config(tmp_path / f"together{s}", seed=s) for s in (3, 4)],
                                data, report=lambda metrics, states: reports.append(metrics))
    for one, other in zip(alone, together):
        assert results_only(one.history) == results_only(other.history)
    assert [r["epoch"] for r in reports] == [1, 2]
    for metrics, epoch in zip(reports, range(2)):
        dice = [run.history[epoch]["val_dice"] for run in alone]
        assert metrics["val_dice"] == pytest.approx(statistics.fmean(dice))
        assert metrics["val_dice_std"] == pytest.approx(statistics.stdev(dice))
        assert (metrics["val_dice_seed3"], metrics["val_dice_seed4"]) == tuple(dice)


def test_one_seed_reports_its_own_metrics_unchanged(tmp_path, data):
    reports = []
    (result,) = train_replicates([tiny_config(tmp_path)], data,
                                 report=lambda metrics, states: reports.append(metrics))
    assert reports == result.history
