"""Ray Tune trials and a controller faked just enough to drive a scheduler without Ray running
(tests/test_sweep_repro.py: OrderedASHA; tests/test_mo_asha.py: MO-ASHA)."""
from __future__ import annotations

import random

from ray.tune.schedulers import TrialScheduler


class FakeTrial:
    def __init__(self, number: int, path=None):
        self.trial_id, self.status, self.path = f"t{number}", "RUNNING", path
        self.experiment_tag = f"{number + 1}_lr=0.001"  # Ray's "<counter>_<params>"
        self.has_reported_at_least_once = path is not None


class FakeController:
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def stop_trial(self, trial):
        self.scheduler.on_trial_remove(self, trial)
        trial.status = "TERMINATED"


def simulate(scheduler, results, seed: int) -> list[tuple[str, int]]:
    """Trials report their epochs (``results[n][e]``: trial n's result dict at epoch e+1) in a
    random interleaving, 3 trials at a time; returns each trial's (status, epochs trained)."""
    rng = random.Random(seed)
    controller = FakeController(scheduler)
    trials, epochs = [], [0] * len(results)
    while True:
        live = [t for t in trials if t.status in ("RUNNING", "PAUSED")]
        if len(live) < 3 and len(trials) < len(results):
            trials.append(FakeTrial(len(trials)))
            scheduler.on_trial_add(controller, trials[-1])
            continue
        chosen = scheduler.choose_trial_to_run(controller)
        if chosen is not None and chosen.status == "PAUSED":
            chosen.status = "RUNNING"
        running = [t for t in trials if t.status == "RUNNING"]
        if not running:
            break
        trial = rng.choice(running)
        number = int(trial.trial_id[1:])
        epochs[number] += 1
        result = {"epoch": epochs[number], **results[number][epochs[number] - 1]}
        decision = scheduler.on_trial_result(controller, trial, result)
        if decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
        elif decision == TrialScheduler.STOP or epochs[number] == len(results[number]):
            trial.status = "TERMINATED"
            scheduler.on_trial_complete(controller, trial, result)
    return [(t.status, epochs[int(t.trial_id[1:])]) for t in trials]
