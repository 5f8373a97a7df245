"""Rewriting a run's transaction log: identical bytes when nothing changes, and W&B's own
reader (`wandb leet inspect`) reads the rewritten copy."""
from __future__ import annotations

import wandb

from sweep.wandb_mirror.inspect import read_run
from sweep.wandb_mirror.txlog import read_payloads, replace_sweep_id, write_payloads


def offline_run(tmp_path, sweep_id: str):
    run = wandb.init(project="p", id="r1", dir=str(tmp_path), mode="offline",
                     reinit="create_new", settings=wandb.Settings(sweep_id=sweep_id, silent=True,
                                                                  console="off"))
    for step in range(1, 4):
        run.log({"epoch": step, "val_dice": step / 10}, step=step)
    run.finish()
    (log,) = (tmp_path / "wandb").glob("offline-run-*/run-r1.wandb")
    return log


def test_round_trip_is_byte_identical_and_spans_blocks(tmp_path):
    log = offline_run(tmp_path, "local123")
    header, payloads = read_payloads(log)
    write_payloads(tmp_path / "copy.wandb", header, payloads)
    assert (tmp_path / "copy.wandb").read_bytes() == log.read_bytes()

    big = bytes(range(256)) * 400  # 100 KiB: split FIRST / MIDDLE / LAST over blocks
    write_payloads(tmp_path / "big.wandb", header, payloads[:2] + [big] + payloads[2:])
    assert read_payloads(tmp_path / "big.wandb")[1] == payloads[:2] + [big] + payloads[2:]


def test_sweep_id_is_cleared_and_nothing_else_changes(tmp_path):
    log = offline_run(tmp_path, "local123")
    assert read_run(log).run["sweep_id"] == "local123"
    assert replace_sweep_id(log, tmp_path / "clean.wandb", "") >= 1

    before, after = read_run(log), read_run(tmp_path / "clean.wandb")
    assert "sweep_id" not in after.run
    assert after.history == before.history and after.summary == before.summary
    assert len(after.records) == len(before.records)
