"""The seeded training loop and everything it needs (settings, losses, checkpoints, determinism,
prediction). Nothing below this package imports ray, wandb, sweep/ or bench/: the same loop
serves ``python -m sweep train``, the Ray Tune trainable, the tests and the benchmarks."""
