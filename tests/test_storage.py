"""Trial storage anywhere Ray can write, tested against a real S3 API on 127.0.0.1 (moto's server,
tests/s3.py): `python -m sweep run` with `--storage=s3://...` puts every trial folder in the
bucket and only the driver's files in runs/<name>/; SIGKILL the driver mid-sweep and `resume`
reads the trials back from the bucket and finishes without rerunning a finished trial; best.pth,
the report and confirm read from the bucket; the credentials are in no file anywhere."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sweep import failures, rundir
from sweep.rundir import TrialStorage, read_trials, storage_of
from tests.helpers import TINY_DATA
from tests.s3 import BUCKET, S3Server
from tests.test_sweep_resume import kill_driver, read_status, wait_for_mid_sweep
from training.settings import ConfigError

REPO = Path(__file__).resolve().parents[1]
STORAGE = f"s3://{BUCKET}/crack"
# smoke.yaml, 2 at a time, 5 epochs (stopped no earlier than 2) so one trial is caught mid-way.
RUN = [sys.executable, "-m", "sweep", "run", "experiments/smoke.yaml", f"--storage={STORAGE}",
       "--search.trials=6", "--search.concurrency=2", "--scheduler.max_epochs=5",
       "--scheduler.grace_period=2"]


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    server.make_bucket()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch):
    """This process and the sweeps it starts reach the bucket through the environment only."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return dict(os.environ)


def sweep_command(args: list[str], env: dict, timeout_s: float = 600):
    try:
        return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"python -m sweep {' '.join(args)} hung: "
                    f"{(error.stderr or b'')[-3000:].decode(errors='replace')}")


def files_holding(text: str, *folders: Path) -> list[str]:
    needle = text.encode()
    found = []
    for folder in folders:
        for path in Path(folder).rglob("*"):
            try:
                if path.is_file() and path.stat().st_size < 50_000_000 \
                        and needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue  # a socket or a file Ray removed meanwhile
    return found


def start_logged_sweep(tmp_path: Path, where: str, env: dict) -> tuple[subprocess.Popen, Path]:
    """RUN with its trials in ``where``, in its own session (kill_driver ends it all); its
    output in tmp_path/sweep.log."""
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        process = subprocess.Popen(RUN + ["--runs-dir", str(tmp_path), f"--storage={where}"],
                                   cwd=REPO, env=env, stdout=out, stderr=out,
                                   start_new_session=True)
    return process, log


def assert_trained_once(record, epochs: int) -> None:
    """Each epoch of a finished trial once, 1..epochs. (Ray uploads result.json in the
    background, so rows read from the bucket mid-sweep may lag: compare with the epochs
    trial_status.json recorded, not with an earlier read.)"""
    assert [row["epoch"] for row in record.rows] == list(range(1, epochs + 1)), record.rows


def test_storage_reads_and_writes_s3_with_credentials_from_the_environment(s3, s3_env,
                                                                           tmp_path):
    storage = TrialStorage(tmp_path / "demo", "s3://sweeps/unit", "demo")
    assert storage.where("tune") == "s3://sweeps/unit/demo/tune" and not storage.is_local
    rundir.record_infeasible(storage, "t1", "out of memory: 3 GiB")
    assert rundir.infeasible_reason(storage, "t1") == "out of memory: 3 GiB"
    assert s3.keys(prefix="unit/") == ["unit/demo/infeasible/t1.json"]
    storage.write_bytes(b"weights", "tune", "t1", "checkpoint_000000", "checkpoint.pth")
    storage.download(("tune", "t1", "checkpoint_000000", "checkpoint.pth"), tmp_path / "b.pth")
    assert (tmp_path / "b.pth").read_bytes() == b"weights"
    assert storage.listdir("tune", "t1") == ["checkpoint_000000"]
    # What travels to Ray's workers (and into Ray's pickled state) is the URI, not the secret.
    assert s3.secret.encode() not in pickle.dumps(storage)
    assert s3.secret.encode() not in pickle.dumps(storage.ray_storage()["storage_filesystem"])
    assert pickle.loads(pickle.dumps(storage)).read_bytes(
        "tune", "t1", "checkpoint_000000", "checkpoint.pth") == b"weights"
    # A local path: <path>/<name>/; none: the run directory itself, as before.
    shared = TrialStorage(tmp_path / "runs" / "demo", str(tmp_path / "nfs"), "demo")
    assert shared.is_local and shared.path("tune") == str(tmp_path / "nfs" / "demo" / "tune")
    assert TrialStorage(tmp_path / "r").root == str((tmp_path / "r").resolve())


def test_a_storage_uri_with_credentials_is_refused(tmp_path):
    from sweep.experiment import load_experiment

    with pytest.raises(ConfigError, match="storage = '<hidden>'.*credentials"):
        load_experiment(REPO / "experiments" / "smoke.yaml",
                        ["--storage=s3://KEY:SECRET@bucket/prefix"])
    with pytest.raises(ConfigError, match="storage = '<hidden>'"):
        load_experiment(REPO / "experiments" / "smoke.yaml",
                        ["--storage=s3://bucket/p?secret_key=abc"])


def test_a_sweep_with_s3_storage_keeps_only_the_drivers_files_locally(ray_session, tmp_path,
                                                                      monkeypatch):
    """The fast end-to-end check (the suite's shared Ray): the endpoint rides in the URI, and
    Ray Tune hands the driver's AWS credentials to its trials itself."""
    from sweep.experiment import load_experiment
    from sweep.runner import run_experiment

    server = S3Server().start()  # its own secret: this Ray session was not started to hide it
    try:
        server.make_bucket()
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, server.env()[key])
        uri = f"s3://{BUCKET}/fast?endpoint_override=127.0.0.1:{server.port}&scheme=http"
        experiment = load_experiment(REPO / "experiments" / "smoke.yaml", [
            f"--storage={uri}", "--name=s3fast", "--search.trials=2",
            "--scheduler.max_epochs=2", *TINY_DATA])
        summary = run_experiment(experiment, tmp_path)
        run_dir = summary.run_dir
        assert summary.counts["complete"] + summary.counts["pruned"] == 2
        assert not (run_dir / "tune").exists() and (run_dir / "best.pth").exists()
        statuses = read_status(run_dir)
        keys = server.keys(prefix="fast/s3fast/tune/")
        for trial_id in statuses:
            assert f"fast/s3fast/tune/{trial_id}/result.json" in keys
        records = read_trials(storage_of(run_dir))
        assert {r.trial_id for r in records} == set(statuses)
        assert all(len(r.checkpoints) <= 2 for r in records)  # pruned when each trial ended
        assert summary.best_val_dice == max(r.best_value() for r in records)
        assert "nodes" in (run_dir / "trials.csv").read_text().splitlines()[0]
    finally:
        server.stop()


@pytest.mark.slow  # two Ray starts, a killed sweep and a resume: minutes on 2 shared cores
def test_s3_sweep_survives_a_driver_sigkill_and_resumes_from_the_bucket(s3, s3_env, tmp_path,
                                                                        hermetic_root):
    run_dir = tmp_path / "smoke"
    process = subprocess.Popen(RUN + ["--runs-dir", str(tmp_path)], cwd=REPO, env=s3_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        before = wait_for_mid_sweep(run_dir, process, timeout_s=240)
    finally:
        kill_driver(process)
    storage = storage_of(run_dir)
    assert storage.where() == f"{STORAGE}/smoke"
    finished = {t for t, e in before.items() if e["status"] != "running"}
    midway = {t for t, e in before.items() if e["status"] == "running" and e["epochs"] >= 2}
    assert finished and midway

    resumed = sweep_command(["resume", str(run_dir)], s3_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    after = read_status(run_dir)
    assert {e["status"] for e in after.values()} <= {"complete", "pruned", "failed"}
    assert sum(e["status"] in ("complete", "pruned") for e in after.values()) >= 6
    # Trial folders live in the bucket only; the driver's own files in runs/<name>/.
    assert not (run_dir / "tune").exists()
    assert {p.name for p in run_dir.iterdir()} >= {
        "experiment.yaml", "study.journal", "trial_status.json", "best.pth", "best_config.yaml",
        "report.html", "trials.csv"}
    keys = s3.keys(prefix="crack/smoke/tune/")
    records = {r.trial_id: r for r in read_trials(storage)}
    for trial_id, entry in after.items():
        if entry["status"] != "failed":
            assert f"crack/smoke/tune/{trial_id}/result.json" in keys
            assert records[trial_id].nodes(), (entry["status"], entry["epochs"], (
                before.get(trial_id) or {}).get("status"), len(s3.read(
                    f"crack/smoke/tune/{trial_id}/result.json")))
    for trial_id in finished:  # not one more epoch for a finished trial
        assert_trained_once(records[trial_id], before[trial_id]["epochs"])
    for trial_id in midway:  # continued from its checkpoint in the bucket, not from epoch 1
        epochs = [row["epoch"] for row in records[trial_id].rows]
        assert epochs.count(1) == 1 and max(epochs) == after[trial_id]["epochs"], epochs
    # best.pth came out of the bucket; the report read the trials from it.
    best = torch.load(run_dir / "best.pth", weights_only=True, map_location="cpu")
    assert best["epoch"] >= 1 and best["model"]
    csv = (run_dir / "trials.csv").read_text()
    assert "nodes" in csv.splitlines()[0] and all(trial_id in csv for trial_id in records)
    assert "could not be read" not in (run_dir / "report.md").read_text()
    # The secret is in no file: not the run directory, the bucket, nor Ray's folders.
    assert not files_holding(s3.secret, run_dir, Path(hermetic_root))
    assert not [k for k in s3.keys() if s3.secret.encode() in s3.read(k)]
    assert json.loads((run_dir / "trial_status.json").read_text()) == after


def test_a_trial_ending_during_an_outage_is_recorded_and_never_handed_back_to_tune(
        s3, s3_env, tmp_path, monkeypatch):
    """Issue 12: TrialStatusLog.on_trial_complete pruned the ended trial's checkpoints in the
    bucket; with S3 down that raised, Tune's stop_trial filed it as a trial error and, with
    max_failures, trained the pruned trial on from its last checkpoint (epochs 3-4 after a
    pruning at 2). Now a short outage is ridden out, and a long one leaves the pruning to a
    later call: the callback never raises."""
    import threading
    from types import SimpleNamespace

    import pyarrow.fs

    from sweep.outcome import TrialOutcomes
    from sweep.status import TrialStatusLog

    run_dir = tmp_path / "cb"
    run_dir.mkdir()
    storage = TrialStorage(run_dir, f"s3://{BUCKET}/callback", "cb")
    # pyarrow's own retries (3 tries, ~6 s) would hide an outage this short: one try here.
    storage.fs = pyarrow.fs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{s3.port}", scheme="http", region="us-east-1",
        access_key=s3_env["AWS_ACCESS_KEY_ID"], secret_key=s3.secret,
        retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1))

    def ended_trial(trial_id: str) -> SimpleNamespace:
        rows = [{"epoch": e, rundir.METRIC: v, "checkpoint_dir_name": f"checkpoint_{e - 1:06d}"}
                for e, v in ((1, 0.1), (2, 0.5), (3, 0.2), (4, 0.3))]
        for row in rows:
            storage.write_bytes(b"w", "tune", trial_id, row["checkpoint_dir_name"],
                                "checkpoint.pth")
        storage.write_bytes(b"{}", "tune", trial_id, "params.json")
        storage.write_bytes("\n".join(json.dumps(r) for r in rows).encode(), "tune", trial_id,
                            "result.json")
        return SimpleNamespace(trial_id=trial_id, last_result=rows[-1], local_path=None,
                               config={}, experiment_tag="1_lr=0.01")

    kept = ["checkpoint_000001", "checkpoint_000003", "params.json", "result.json"]
    callback = TrialStatusLog(run_dir, storage, TrialOutcomes(storage, max_epochs=5), total=2)
    short = ended_trial("t1")
    s3.stop()
    back = threading.Timer(3, s3.start)  # S3 back in 3 s
    back.start()
    try:
        callback.on_trial_complete(0, [], short)  # rides the outage out
    finally:
        back.join()
    assert rundir.read_statuses(run_dir)["t1"]["status"] == "pruned"
    assert storage.listdir("tune", "t1") == kept

    long = ended_trial("t2")
    monkeypatch.setattr(failures, "STORAGE_RIDE_OUT_S", 0.5)
    s3.stop()
    try:
        callback.on_trial_complete(0, [], long)  # must not raise: Tune would rerun it
    finally:
        s3.start()
    entry = rundir.read_statuses(run_dir)["t2"]
    assert (entry["status"], entry["epochs"]) == ("pruned", 4)
    assert len(storage.listdir("tune", "t2")) == 6  # not pruned yet ...
    callback.on_experiment_end([])
    assert storage.listdir("tune", "t2") == kept  # ... but once the storage is back


UPLOAD_FAILED = """Traceback (most recent call last):
  File "ray/train/_internal/storage.py", line 1, in persist_current_checkpoint
    _pyarrow_fs_copy_files(source, destination, timeout=timeout)
OSError: When uploading part for key 'x/tune/abc/checkpoint_000001/checkpoint.pth': AWS Error
NETWORK_CONNECTION during UploadPart operation: curlCode: 7, Couldn't connect to server
"""


def test_a_trial_that_cannot_reach_the_bucket_stops_the_sweep_in_one_line(tmp_path):
    """Past the ride-out a trial's upload fails; left to Tune it would be retried, fail its
    restore from the same bucket and end failed for good. The first such error stops the sweep
    in one line instead, so `resume` continues the trial once the storage is back."""
    from types import SimpleNamespace

    from sweep.outage import StopWhenStorageUnreachable, StorageUnreachable

    error_file = tmp_path / "error.txt"
    trial = SimpleNamespace(trial_id="abc", error_file=str(error_file))
    bucket = SimpleNamespace(is_local=False, where=lambda *parts: "s3://b/crack")
    error_file.write_text(UPLOAD_FAILED)
    with pytest.raises(StorageUnreachable) as stopped:
        StopWhenStorageUnreachable(tmp_path, bucket).on_trial_recover(0, [], trial)
    assert str(stopped.value) == (f"trial storage s3://b/crack unreachable (trial abc could not "
                                  f"upload to it); when it is back: python -m sweep resume "
                                  f"{tmp_path}")
    # A local storage, or any other error (even one whose traceback says "timeout"), is Tune's.
    local = SimpleNamespace(is_local=True)
    StopWhenStorageUnreachable(tmp_path, local).on_trial_error(0, [], trial)
    error_file.write_text('  File "x.py", line 3, in f\n    wait(timeout=3)\n'
                          "RuntimeError: CUDA error: an illegal memory access\n")
    StopWhenStorageUnreachable(tmp_path, bucket).on_trial_error(0, [], trial)


@pytest.mark.slow
def test_a_long_s3_outage_stops_the_sweep_in_one_line_and_resume_finishes_it(s3, s3_env,
                                                                              tmp_path):
    """The storage gone for longer than trials ride out (2 s here, through the environment):
    exit 2 with one line naming the resume; once S3 is back, `resume` completes the sweep and
    no trial that had finished trains again."""
    run_dir, where = tmp_path / "smoke", f"s3://{BUCKET}/long"
    env = {**s3_env, failures.RIDE_OUT_ENV: "2"}
    process, log = start_logged_sweep(tmp_path, where, env)
    try:
        before = wait_for_mid_sweep(run_dir, process, timeout_s=240)
        s3.stop()
        try:
            process.wait(timeout=300)
        finally:
            s3.start()
    finally:
        kill_driver(process)
    lines = log.read_text().strip().splitlines()
    assert process.returncode == 2, lines[-30:]
    assert lines[-1].startswith(f"error: trial storage {where}/smoke unreachable (trial "), \
        lines[-20:]  # the first trial that could not upload stopped it (StopWhenStorageUnreachable)
    assert lines[-1].endswith(f"could not upload to it); when it is back: python -m sweep "
                              f"resume {run_dir}")
    resumed = sweep_command(["resume", str(run_dir)], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = read_status(run_dir)
    assert sum(e["status"] in ("complete", "pruned") for e in after.values()) == 6, after
    # A trial started after Ray's last upload of its state (the bucket was down) is one the
    # resumed Ray does not know: recorded as lost, and the search fills its place.
    for entry in after.values():
        assert entry["status"] in ("complete", "pruned") or "lost" in entry["reason"], entry
    records = {r.trial_id: r for r in read_trials(storage_of(run_dir))}
    for trial_id, entry in before.items():
        if entry["status"] != "running":
            assert_trained_once(records[trial_id], entry["epochs"])
    for record in records.values():  # no epoch trained twice, the cut-short ones included
        epochs = [row["epoch"] for row in record.rows]
        assert epochs == sorted(set(epochs)), (record.trial_id, epochs)


@pytest.mark.slow
def test_an_s3_outage_mid_sweep_is_ridden_out_or_named_in_one_line(s3, s3_env, tmp_path):
    """The S3 server stops for a few seconds while trials report: the sweep retries and goes
    on, or stops with one line naming what to resume; either way it ends complete, and no
    trial that finished before the outage runs again."""
    run_dir, where = tmp_path / "smoke", f"s3://{BUCKET}/outage"
    process, log = start_logged_sweep(tmp_path, where, s3_env)
    try:
        before = wait_for_mid_sweep(run_dir, process, timeout_s=240)
        s3.outage(OUTAGE_S)
        process.wait(timeout=900)
    finally:
        kill_driver(process)
    lines = log.read_text().strip().splitlines()
    if process.returncode != 0:  # stopped: one line says what to resume
        assert lines[-1].startswith(f"error: trial storage {where}/smoke unreachable"), \
            lines[-20:]
        assert lines[-1].endswith(f"when it is back: python -m sweep resume {run_dir}")
        resumed = sweep_command(["resume", str(run_dir)], s3_env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = read_status(run_dir)
    assert sum(e["status"] in ("complete", "pruned") for e in after.values()) >= 6, after
    records = {r.trial_id: r for r in read_trials(storage_of(run_dir))}
    for trial_id, entry in before.items():
        if entry["status"] != "running":
            assert_trained_once(records[trial_id], entry["epochs"])
    print(f"outage of {OUTAGE_S} s: exit {process.returncode}; statuses {after}")


OUTAGE_S = 8
