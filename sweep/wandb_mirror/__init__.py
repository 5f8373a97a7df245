"""Mirror a Ray Tune sweep into a W&B sweep: one W&B run per trial, written by one low-priority
process for the whole sweep (not inside trials: ASHA kills those before W&B flushes).

Light on purpose: the writer process imports this package and must not pull in torch or ray.
Entry points: ``callback.make_wandb_callback`` (driver), ``writer`` (the logging process),
``sync.sync_run_dir`` (upload), ``val_images.val_panel_reporter`` (inside trials; it imports
no driver code).
"""
