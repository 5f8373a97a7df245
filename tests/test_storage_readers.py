"""What the driver reads back from a bucket (moto's S3 server on 127.0.0.1) after a sweep whose
trials may have run on other nodes: the W&B validation panels, which a trial puts into its
folder in the trial storage (before, the result carried a path on the trial's own disk, which
the driver of a cluster cannot open), and `confirm`, whose reruns go beside the sweep's."""
from __future__ import annotations

import json
from pathlib import Path

from sweep.confirm import confirm_run
from sweep.rundir import CONFIRM_DIR, read_trials, storage_of
from sweep.wandb_mirror.inspect import read_run
from tests.helpers import TINY_DATA
from tests.s3 import BUCKET, S3Server
from tests.test_sweep_resume import read_status

REPO = Path(__file__).resolve().parents[1]


def test_panels_and_confirm_go_through_the_bucket(ray_session, tmp_path, monkeypatch):
    from sweep.experiment import load_experiment
    from sweep.runner import run_experiment

    server = S3Server().start()
    try:
        server.make_bucket()
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, server.env()[key])
        monkeypatch.setenv("WANDB_MODE", "offline")
        uri = f"s3://{BUCKET}/panels?endpoint_override=127.0.0.1:{server.port}&scheme=http"
        experiment = load_experiment(REPO / "experiments" / "smoke.yaml", [
            f"--storage={uri}", "--name=s3panels", "--search.trials=2",
            "--scheduler.max_epochs=2", "--wandb.mode=offline", "--wandb.image_count=2",
            *TINY_DATA])
        summary = run_experiment(experiment, tmp_path)
        run_dir = summary.run_dir
        keys = server.keys(prefix="panels/s3panels/tune/")
        mirrored = json.loads((run_dir / "wandb" / "mirror.json").read_text())["runs"]
        assert set(mirrored) == set(read_status(run_dir))
        logged = 0
        for trial_id, entry in mirrored.items():
            run = read_run(run_dir / entry["dirs"][0])
            panels = [row for row in run.history if "val_images.path" in row]
            assert panels, f"trial {trial_id}: no panel in W&B"
            for row in panels:
                # In the bucket, under the trial's folder, and copied into the W&B run.
                assert f"panels/s3panels/tune/{trial_id}/val_images/epoch_{row['epoch']:03d}.png" \
                    in keys
                assert (run_dir / entry["dirs"][0] / "files" / row["val_images.path"]).is_file()
                logged += 1
        assert logged >= 2
        assert not (run_dir / "tune").exists()  # nothing of the trials on the driver's disk

        result = confirm_run(run_dir, top_k=1, seeds=1)
        (entry,) = result["configs"]
        assert entry["n"] == 1 and 0 <= entry["mean"] <= 1
        (record,) = read_trials(storage_of(run_dir), CONFIRM_DIR)  # read from the bucket
        assert [row["epoch"] for row in record.rows] == [1, 2]
        assert f"panels/s3panels/confirm/{record.trial_id}/result.json" in server.keys(
            prefix="panels/s3panels/confirm/")
        assert not (run_dir / CONFIRM_DIR).exists()
    finally:
        server.stop()
