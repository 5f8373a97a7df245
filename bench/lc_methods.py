"""The search methods the `search` benchmark compares, each an experiment's ``search:`` and
``scheduler:`` sections as a user would write them (sweep/experiment.py), so that a method is
run by exactly the code `sweep run` runs. ``shipped`` is read from experiments/quickstart.yaml:
the benchmark measures whatever the project ships, not a copy of it."""
from __future__ import annotations

from pathlib import Path

from bench.child import REPO_ROOT

SHIPPED_FILE = REPO_ROOT / "experiments" / "quickstart.yaml"
NO_STOP = "no_stop"  # grace_period = max_epochs: ASHA never stops a trial before its end

# name -> (search settings, scheduler settings, what it is). ASHA's rungs compare val_loss (early
# val_dice is mostly 0 on crack problems); start-up 8 trials: quickstart's.
ASHA = {"grace_period": 1, "reduction_factor": 2, "metric": "val_loss"}
ASHA_DICE = {**ASHA, "metric": "val_dice"}
METHODS = {
    "random": ({"sampler": "random"}, {"grace_period": NO_STOP},
               "random search, every trial trained to the end (the baseline)"),
    "random_asha": ({"sampler": "random"}, dict(ASHA),
                    "random search + ASHA (grace 1, halving, val_loss rungs)"),
    "random_asha_dice": ({"sampler": "random"}, dict(ASHA_DICE),
                         "random search + ASHA comparing val_dice at its rungs"),
    "random_asha_rf3": ({"sampler": "random"}, {**ASHA, "reduction_factor": 3},
                        "random search + ASHA keeping 1 in 3"),
    "tpe": ({"sampler": "tpe", "startup_trials": 8}, {"grace_period": NO_STOP},
            "Optuna 5 TPE (multivariate, constant liar), 8 start-up trials, no stopping"),
    "tpe_asha": ({"sampler": "tpe", "startup_trials": 8}, dict(ASHA),
                 "TPE + ASHA: TPE told pruned trials' intermediate val_dice"),
    "tpe_asha_dice": ({"sampler": "tpe", "startup_trials": 8}, dict(ASHA_DICE),
                      "TPE + ASHA comparing val_dice at its rungs (the metric TPE is told)"),
    "gp": ({"sampler": "gp", "startup_trials": 8}, {"grace_period": NO_STOP},
           "Optuna's GP sampler, 8 start-up trials, no stopping"),
    "gp_asha": ({"sampler": "gp", "startup_trials": 8}, dict(ASHA),
                "GP + ASHA (GP learns from complete trials only)"),
    "bohb": ({"sampler": "bohb", "startup_trials": 8}, dict(ASHA),
             "BOHB-style (sweep/rung_sampler.py): TPE fitted at the largest rung with 8 "
             "finished trials, on the rung metric, + ASHA"),
    "bohb_dice": ({"sampler": "bohb", "startup_trials": 8}, dict(ASHA_DICE),
                  "BOHB-style + ASHA, both on val_dice at the rungs"),
    "random_hyperband": ({"sampler": "random"}, {**ASHA_DICE, "brackets": 3},
                         "random search + ASHA in 3 Hyperband brackets (first rungs at 1, 2, 4)"),
    "bohb_hyperband": ({"sampler": "bohb", "startup_trials": 8}, {**ASHA_DICE, "brackets": 3},
                       "BOHB-style + ASHA in 3 Hyperband brackets, val_dice rungs"),
    "bohb_s4": ({"sampler": "bohb", "startup_trials": 4}, dict(ASHA),
                "BOHB-style with 4 trials per budget before modelling it"),
    "bohb_s12": ({"sampler": "bohb", "startup_trials": 12}, dict(ASHA),
                 "BOHB-style with 12 trials per budget before modelling it"),
    "bohb_rf3": ({"sampler": "bohb", "startup_trials": 8}, {**ASHA, "reduction_factor": 3},
                 "BOHB-style + ASHA keeping 1 in 3"),
}
BASELINE = "random"
STOPPING_BASELINE = "random_asha"


def shipped_sections(file: Path = SHIPPED_FILE) -> tuple[dict, dict]:
    """An experiment file's search and scheduler sections (default quickstart.yaml: what `make
    sweep` runs)."""
    from training.settings import load_yaml

    values = load_yaml(file)
    search = {k: v for k, v in values.get("search", {}).items()
              if k in ("sampler", "startup_trials", "multivariate", "constant_liar")}
    scheduler = {k: v for k, v in values.get("scheduler", {}).items()
                 if k in ("grace_period", "reduction_factor", "metric", "brackets")}
    return search, scheduler


def shipped_name() -> str:
    """The METHODS entry quickstart.yaml ships (same search and scheduler sections, start-up
    trials aside where the sampler has none), or "shipped" when it is none of them."""
    search, scheduler = resolved_sections("shipped", 6)
    for name in METHODS:
        theirs_search, theirs_scheduler = resolved_sections(name, 6)
        if comparable(search) == comparable(theirs_search) and scheduler == theirs_scheduler:
            return name
    return "shipped"


def comparable(search: dict) -> dict:
    """Search settings as they act: start-up trials mean nothing to the random sampler, and the
    sweep's defaults (sweep/experiment.py) fill what a section leaves out."""
    from sweep.experiment import SearchSettings

    full = {key: search.get(key, getattr(SearchSettings, key))
            for key in ("sampler", "startup_trials", "multivariate", "constant_liar")}
    if full["sampler"] == "random":
        full = {"sampler": "random"}
    return full


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
    scheduler.setdefault("brackets", 1)
    return search, {**scheduler, "max_epochs": max_epochs}


def experiment_for(table, method: str, seed: int, concurrency: int, trials: int = 10_000,
                   mode: str = "reproducible"):
    """The replay's experiment: the table's space and fixed settings, one method's search and
    scheduler sections, the search seed, concurrency and mode (default the shipped one:
    reproducible, OrderedASHA and held-back tells). Validated as a user's file would be."""
    from sweep.experiment import Experiment

    search, scheduler = resolved_sections(method, table.max_epochs)
    values = {"name": f"replay-{method}-c{concurrency}-s{seed}",
              "train": {"model": "unet", "device": "cpu", **table.fixed_train()},
              "space": table.space(),
              # seeds: every trial reports the mean of the table's seen repeats, as a sweep
              # with search.seeds = repeats does.
              "search": {**search, "seed": seed, "concurrency": concurrency, "trials": trials,
                         "mode": mode, "seeds": table.seeds},
              "scheduler": scheduler,
              "wandb": {"enabled": False}}
    return Experiment.from_dict(values, f"replay method {method}")
