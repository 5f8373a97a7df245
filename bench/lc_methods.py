"""The search methods the `search` benchmark compares, each an experiment's ``search:`` and
``scheduler:`` sections as a user would write them (sweep/experiment.py), so that a method is
run by exactly the code `sweep run` runs. ``shipped`` is read from experiments/quickstart.yaml:
the benchmark measures whatever the project ships, not a copy of it."""
from __future__ import annotations

from bench.child import REPO_ROOT

SHIPPED_FILE = REPO_ROOT / "experiments" / "quickstart.yaml"
NO_STOP = "no_stop"  # grace_period = max_epochs: ASHA never stops a trial before its end

# name -> (search settings, scheduler settings, what it is). Start-up trials 8: quickstart's.
METHODS = {
    "random": ({"sampler": "random"}, {"grace_period": NO_STOP},
               "random search, every trial trained to the end (the baseline)"),
    "random_asha": ({"sampler": "random"}, {"grace_period": 1, "reduction_factor": 2},
                    "random search + ASHA (grace 1, halving)"),
    "tpe": ({"sampler": "tpe", "startup_trials": 8}, {"grace_period": NO_STOP},
            "Optuna 5 TPE (multivariate, constant liar), 8 start-up trials, no stopping"),
    "tpe_asha": ({"sampler": "tpe", "startup_trials": 8},
                 {"grace_period": 1, "reduction_factor": 2},
                 "TPE + ASHA grace 1, halving: the default before issue 14"),
    "tpe_indep_asha": ({"sampler": "tpe", "startup_trials": 8, "multivariate": False,
                        "constant_liar": False}, {"grace_period": 1, "reduction_factor": 2},
                       "independent TPE, no constant liar (Optuna 4's defaults) + ASHA"),
    "tpe_s4_asha": ({"sampler": "tpe", "startup_trials": 4},
                    {"grace_period": 1, "reduction_factor": 2},
                    "TPE with 4 start-up trials + ASHA"),
    "tpe_s16_asha": ({"sampler": "tpe", "startup_trials": 16},
                     {"grace_period": 1, "reduction_factor": 2},
                     "TPE with 16 start-up trials + ASHA"),
    "tpe_asha_g2": ({"sampler": "tpe", "startup_trials": 8},
                    {"grace_period": 2, "reduction_factor": 2},
                    "TPE + ASHA with a later first rung (grace 2)"),
    "tpe_asha_g3_rf3": ({"sampler": "tpe", "startup_trials": 8},
                        {"grace_period": 3, "reduction_factor": 3},
                        "TPE + ASHA grace 3, keep 1 in 3"),
    # ASHA comparing val_loss at its rungs (TPE still told val_dice): in the table, epoch-1
    # val_dice is 0 for 106 of 288 configurations, the eventual best among them.
    "random_asha_loss": ({"sampler": "random"},
                         {"grace_period": 1, "reduction_factor": 2, "metric": "val_loss"},
                         "random search + ASHA on val_loss (grace 1, halving)"),
    "tpe_asha_loss": ({"sampler": "tpe", "startup_trials": 8},
                      {"grace_period": 1, "reduction_factor": 2, "metric": "val_loss"},
                      "TPE + ASHA on val_loss (grace 1, halving)"),
    "tpe_asha_loss_g2": ({"sampler": "tpe", "startup_trials": 8},
                         {"grace_period": 2, "reduction_factor": 2, "metric": "val_loss"},
                         "TPE + ASHA on val_loss, first rung at epoch 2"),
    "tpe_asha_loss_rf3": ({"sampler": "tpe", "startup_trials": 8},
                          {"grace_period": 1, "reduction_factor": 3, "metric": "val_loss"},
                          "TPE + ASHA on val_loss, keep 1 in 3"),
    "tpe_asha_loss_g3": ({"sampler": "tpe", "startup_trials": 8},
                         {"grace_period": 3, "reduction_factor": 2, "metric": "val_loss"},
                         "TPE + ASHA on val_loss, first rung at epoch 3"),
    "tpe_s16_asha_loss": ({"sampler": "tpe", "startup_trials": 16},
                          {"grace_period": 1, "reduction_factor": 2, "metric": "val_loss"},
                          "TPE with 16 start-up trials + ASHA on val_loss"),
    "gp": ({"sampler": "gp", "startup_trials": 8}, {"grace_period": NO_STOP},
           "Optuna's GP sampler, 8 start-up trials, no stopping (GP learns from completed "
           "trials only, so ASHA would hide most trials from it)"),
}
BASELINE = "random"
STOPPING_BASELINE = "random_asha"


def shipped_sections() -> tuple[dict, dict]:
    """quickstart.yaml's search and scheduler sections (what `make sweep` runs)."""
    from training.settings import load_yaml

    values = load_yaml(SHIPPED_FILE)
    search = {k: v for k, v in values.get("search", {}).items()
              if k in ("sampler", "startup_trials", "multivariate", "constant_liar")}
    scheduler = {k: v for k, v in values.get("scheduler", {}).items()
                 if k in ("grace_period", "reduction_factor", "metric")}
    return search, scheduler


def method_sections(name: str) -> tuple[dict, dict]:
    if name == "shipped":
        return shipped_sections()
    search, scheduler, _ = METHODS[name]
    return dict(search), dict(scheduler)


def resolved_sections(method: str, max_epochs: int) -> tuple[dict, dict]:
    """A method's search and scheduler sections for trials of ``max_epochs`` epochs."""
    search, scheduler = method_sections(method)
    if scheduler.get("grace_period") == NO_STOP:
        scheduler["grace_period"] = max_epochs
    scheduler["grace_period"] = min(int(scheduler.get("grace_period", 1)), max_epochs)
    return search, {**scheduler, "max_epochs": max_epochs}


def experiment_for(table, method: str, seed: int, concurrency: int, trials: int = 10_000):
    """The replay's experiment: the table's space and fixed settings, one method's search and
    scheduler sections, the search seed and concurrency. Validated as a user's file would be."""
    from sweep.experiment import Experiment

    search, scheduler = resolved_sections(method, table.max_epochs)
    values = {"name": f"replay-{method}-c{concurrency}-s{seed}",
              "train": {"model": "unet", "device": "cpu", **table.fixed_train()},
              "space": table.space(),
              # async: the replay's event order is a function of the table alone, so every
              # replay is reproducible by construction; the simulator has no pause/resume
              # (OrderedASHA's) and no held-back tells. seeds: every trial reports the mean of
              # the table's repeats, as a sweep with search.seeds = repeats does.
              "search": {**search, "seed": seed, "concurrency": concurrency, "trials": trials,
                         "mode": "async", "seeds": table.seeds},
              "scheduler": scheduler,
              "wandb": {"enabled": False}}
    return Experiment.from_dict(values, f"replay method {method}")
