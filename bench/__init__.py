"""Benchmarks, outside the installed package (they import it, never the other way round).

Every figure is a ratio of two sides measured side by side in one run. ``python -m bench
[NAME ...]`` (``make bench``) runs them (see ``registry.BENCHMARKS``); each has a tiny mode
(``--tiny``) that the test suite runs to prove the code works, not to measure speed. Nothing
imported here may pull in ray, optuna, wandb or pandas: ``gpu_bench`` runs on a machine with
torch alone.
"""
