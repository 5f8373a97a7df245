"""A search-space entry (``{kind: bounds}``, experiment.yaml's ``space:``) as the Optuna
distribution the searcher samples and the study records. Light on purpose: the report reads
experiment.yaml's ranges through the same conversion without importing the experiment."""
from __future__ import annotations


def to_distribution(spec: dict):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return CategoricalDistribution(bounds)
    if kind == "int":
        return IntDistribution(bounds[0], bounds[1])
    return FloatDistribution(float(bounds[0]), float(bounds[1]), log=kind == "loguniform")
