"""The fault-injection pass of issue 15 (items 2, 3, 6, 10), made permanent: each case is the
fault as a user meets it and what must happen instead of a traceback, a lost trial or an open
port. The long ones (a real full tmpfs, a real SIGTERM) are `slow`: `make fuzz` runs them."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import ray  # noqa: F401 - also puts Ray's own psutil on the path

from sweep import exposure, runlock
from sweep.__main__ import main
from sweep.recover import DamagedRun, check_before_resume
from sweep.rundir import (
    LOCK_FILE,
    MIRROR_FILE,
    STATUS_FILE,
    STUDY_FILE,
    TUNE_DIR,
    read_statuses,
)
from tests.test_exposure_ports import UNGUARDED
from tests.test_sweep_resume import kill_driver, read_status
from training.atomic import DiskFullError

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.yaml"
TINY_TRAIN = ["--width", "4", "--synthetic-images", "16", "--synthetic-size", "32", "-e", "1",
              "-b", "4", "--threads", "1"]
HOLD = ("import sys, time\nfrom sweep import runlock\nwith runlock.hold(sys.argv[1]):\n"
        "    print('held', flush=True)\n    time.sleep(300)\n")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---- 2. one live sweep per run directory ---------------------------------------------------------
@pytest.fixture
def live_holder(tmp_path):
    """Another process holding runs/smoke's lock, as a live sweep does."""
    run_dir = tmp_path / "smoke"
    (run_dir / TUNE_DIR).mkdir(parents=True)
    shutil.copy(SMOKE, run_dir / "experiment.yaml")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield run_dir, holder
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("command", ["run", "resume", "confirm"])
def test_a_live_sweep_refuses_a_second_command_in_one_line(live_holder, command, capsys):
    run_dir, holder = live_holder
    argv = {"run": ["run", str(SMOKE), "--runs-dir", str(run_dir.parent)],
            "resume": ["resume", str(run_dir)], "confirm": ["confirm", str(run_dir)]}[command]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert f"in use by pid {holder.pid} (" in line and " since 20" in line, line


def test_a_lock_left_by_a_killed_process_never_blocks(live_holder):
    run_dir, holder = live_holder
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (run_dir / LOCK_FILE).exists()  # the file stays; the kernel dropped its lock
    with runlock.hold(run_dir):
        assert f"pid {os.getpid()} " in (run_dir / LOCK_FILE).read_text()


# ---- 3. corrupt state on resume ---------------------------------------------------------------
def best_trial(run_dir: Path) -> str:
    return max((e.get("best_val_dice", -1), t) for t, e in read_statuses(run_dir).items())[1]


def test_deleted_status_file_is_rebuilt_from_rays_results(run_copy):
    from sweep.runner import resume_experiment

    before = read_statuses(run_copy)
    (run_copy / STATUS_FILE).unlink()
    summary = resume_experiment(run_copy)
    assert summary.trials == len(before) and summary.counts["running"] == 0
    assert {t: e["status"] for t, e in read_statuses(run_copy).items()} == \
        {t: e["status"] for t, e in before.items()}
    assert summary.best_trial == best_trial(run_copy)
    assert any("rebuilt 6 trial(s)" in note for note in summary.recovered), summary.recovered


def test_a_copied_run_resumes_into_itself_not_the_original(smoke_run, run_copy):
    """Tune unpickles the status log and the W&B mirror with the original's absolute paths:
    a resumed copy wrote its trial_status.json and W&B runs there (the searcher's journal and
    the trials made after the resume: tests/test_copied_run.py)."""
    from sweep.runner import resume_experiment

    originals = {name: (smoke_run / name).read_bytes()
                 for name in (STATUS_FILE, MIRROR_FILE)}
    (run_copy / STATUS_FILE).unlink()  # rebuilt by the resume: it must land in the copy
    resume_experiment(run_copy)
    assert (run_copy / STATUS_FILE).is_file()
    for name, content in originals.items():
        assert (smoke_run / name).read_bytes() == content, name


def test_non_utf8_bytes_in_a_result_file_are_dropped_and_said(run_copy):
    from sweep.runner import resume_experiment

    # A trial with more than one epoch, so a line is left once the damaged one is dropped
    # (trial ids are random: the first by name may be a trial pruned after one epoch).
    result = next(r for r in sorted((run_copy / TUNE_DIR).glob("*/result.json"))
                  if len(r.read_bytes().splitlines()) > 1)
    lines = result.read_bytes().splitlines()
    result.write_bytes(b"\n".join([lines[0][:20] + b"\xff\xfe" + lines[0][20:], *lines[1:]])
                       + b"\n")
    summary = resume_experiment(run_copy)
    assert summary.best_trial and (run_copy / "best.pth").is_file()
    assert any("dropped 1 damaged line" in note for note in summary.recovered)
    assert result.read_bytes().decode("utf-8")  # clean again


def test_torn_journal_tail_is_cut_and_said(run_copy):
    journal = run_copy / STUDY_FILE
    journal.write_bytes(journal.read_bytes() + b'{"op_code": 5, "worker_id": "x", "tri')
    notes = check_before_resume(run_copy, max_epochs=3)
    assert any("torn last record" in note for note in notes)
    import optuna

    from sweep.rundir import journal_storage
    assert len(optuna.load_study(study_name="smoke", storage=journal_storage(run_copy)).trials)


@pytest.mark.parametrize("damage", ["journal deleted", "journal torn inside",
                                    "experiment state torn", "experiment state deleted",
                                    "searcher state emptied", "search generator state torn"])
def test_damage_a_resume_cannot_repair_is_refused_in_one_line(run_copy, damage, capsys):
    journal = run_copy / STUDY_FILE
    state = sorted((run_copy / TUNE_DIR).glob("experiment_state-*.json"))[-1]
    if damage == "journal deleted":
        journal.unlink()
    elif damage == "journal torn inside":
        lines = journal.read_bytes().splitlines()
        journal.write_bytes(b"\n".join([lines[0], lines[1][:10], *lines[2:]]) + b"\n")
    elif damage == "experiment state torn":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "experiment state deleted":
        state.unlink()
    elif damage == "searcher state emptied":
        sorted((run_copy / TUNE_DIR).glob("searcher-state-*.pkl"))[-1].write_bytes(b"")
    else:  # a kill while Ray copied it into tune/ (seen in test_sweep_resume's SIGKILL test)
        generator = sorted((run_copy / TUNE_DIR).glob("search_gen_state-*.json"))[-1]
        generator.write_bytes(generator.read_bytes()[: generator.stat().st_size // 2])
    untouched = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    with pytest.raises(DamagedRun):
        check_before_resume(run_copy, max_epochs=3)
    assert main(["resume", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "nothing was changed" in line
    assert {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file()
            and p.name != LOCK_FILE} == {p: b for p, b in untouched.items()
                                        if p.name != LOCK_FILE}


# ---- 6. a full disk -----------------------------------------------------------------------------
def test_train_on_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, capsys):
    import torch

    def full_disk_save(payload, target, *args, **kwargs):
        Path(target).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed") from \
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk_save)
    out = tmp_path / "out"
    assert main(["train", *TINY_TRAIN, "--out-dir", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: disk full: cannot write ") and " MB free of " in line, line
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_metrics_append_on_a_full_disk_is_a_disk_full_error(tmp_path, monkeypatch):
    from training import loop

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "open", no_space)
    with pytest.raises(DiskFullError, match="metrics.jsonl"):
        loop.append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 1})


def test_a_sweep_stopped_by_a_full_disk_says_so_and_removes_partial_files(tmp_path):
    from sweep.diskspace import sweep_disk_full

    trial = tmp_path / TUNE_DIR / "abc"
    (trial / "checkpoint_000001").mkdir(parents=True)
    (trial / "checkpoint_000001" / "checkpoint.pth").write_bytes(b"PK\x03\x04torn")
    (trial / ".result.json.123.tmp").write_bytes(b"")
    error = sweep_disk_full(tmp_path, RuntimeError("[Errno 28] No space left on device"))
    assert isinstance(error, DiskFullError)
    assert "removed 2 partial file(s)" in str(error) and "sweep resume" in str(error)
    assert not list(trial.rglob("*.tmp")) and not list(trial.rglob("checkpoint.pth"))
    assert sweep_disk_full(tmp_path, ValueError("unrelated")) is None


def test_the_first_out_of_space_trial_error_stops_the_sweep(tmp_path):
    from sweep.diskspace import StopWhenDiskFull

    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback ...\nOSError: [Errno 28] No space left on device: 'x'\n")
    trial = type("Trial", (), {"trial_id": "abc", "error_file": str(error_file)})()
    with pytest.raises(DiskFullError, match="disk full"):
        StopWhenDiskFull(tmp_path).on_trial_recover(0, [], trial)
    error_file.write_text("ValueError: something else\n")
    StopWhenDiskFull(tmp_path).on_trial_error(0, [], trial)  # not ours: Ray retries as before


def test_a_full_disk_names_the_trial_folder_in_the_storage_it_filled(tmp_path):
    """A local (shared) storage outside the run directory holds the trial folders: the line
    names the trial's folder there, and the cleanup reaches it. With a bucket the disk that
    filled is the trial node's own, which the error's path names."""
    from sweep.diskspace import StopWhenDiskFull, sweep_disk_full
    from sweep.rundir import TrialStorage

    run_dir, shared = tmp_path / "runs" / "crack", tmp_path / "shared"
    run_dir.mkdir(parents=True)
    storage = TrialStorage(run_dir, str(shared), "crack")
    error_file = tmp_path / "error.txt"
    error_file.write_text("OSError: [Errno 28] No space left on device: '/tmp/ray/w/abc/x.pth'\n")
    trial = type("Trial", (), {"trial_id": "abc", "error_file": str(error_file)})()
    with pytest.raises(DiskFullError, match=str(shared / "crack" / TUNE_DIR / "abc")):
        StopWhenDiskFull(run_dir, storage).on_trial_error(0, [], trial)
    bucket = type("Bucket", (), {"is_local": False})()  # only what the callback asks of one
    with pytest.raises(DiskFullError, match="/tmp/ray/w/abc"):
        StopWhenDiskFull(run_dir, bucket).on_trial_error(0, [], trial)

    torn = shared / "crack" / TUNE_DIR / "abc" / "checkpoint_000002"
    torn.mkdir(parents=True)
    (torn / "checkpoint.pth").write_bytes(b"PK\x03\x04torn")
    (run_dir / ".trial_status.json.9.tmp").write_bytes(b"")
    error = sweep_disk_full(run_dir, OSError(28, "No space left on device"), storage)
    assert "removed 2 partial file(s)" in str(error)
    assert not (torn / "checkpoint.pth").exists()


# ---- 10. exposure -----------------------------------------------------------------------------
def test_the_token_file_is_created_private_and_a_public_one_narrowed(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    path = exposure.ensure_private_token()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) == 64 and int(path.read_text(), 16) >= 0
    os.chmod(path, 0o644)
    exposure.ensure_private_token()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


DRIVER = """
import time, ray
from sweep import dashboard
dashboard.connect(include_dashboard=True)
ray.get(ray.remote(lambda: 1).remote())
print(ray._private.worker._global_node.get_session_dir_path(), flush=True)
time.sleep(600)
"""


def session_processes(session: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if session.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def listening(pids: list[int]) -> list[tuple[str, int]]:
    import psutil  # Ray's own copy (ray, imported above, puts it on the path)

    addresses = []
    for pid in pids:
        try:
            addresses += [(c.laddr.ip, c.laddr.port) for c in
                          psutil.Process(pid).net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    return addresses


def http_status(port: int) -> int | str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except Exception as error:  # noqa: BLE001 - gRPC ports answer HTTP with garbage
        return type(error).__name__


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_a_local_sweeps_ray_listens_on_loopback_only_and_dies_with_its_driver(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    for name in ("RAY_AUTH_MODE", "RAY_ADDRESS", *exposure.LOCAL_RAY_ENV):
        env.pop(name, None)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        session = Path(driver.stdout.readline().strip()).name
        assert session.startswith("session_")
        import psutil

        tree = [driver.pid] + [p.pid for p in psutil.Process(driver.pid).children(True)]
        addresses = listening(tree)
        assert addresses and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, _ in addresses), \
            addresses
        # No open metrics but the two fixed-port Prometheus servers Ray 2.60 starts whatever
        # its metrics flag says (docs/EXPOSURE.md; tests/test_exposure_ports.py checks which
        # process owns each): whether they are up yet when this looks depends on timing.
        fixed = set(UNGUARDED.values())
        assert not [port for _, port in addresses
                    if port not in fixed and http_status(port) == 200]
        token = tmp_path / ".ray" / "auth_token"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 20
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = session_processes(session)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray processes outlived the killed driver: {left}"


# ---- the same, for real: a sweep into a nearly full tmpfs (root only) ----------------------------
@pytest.mark.slow
def test_a_sweep_on_a_full_tmpfs_stops_in_one_line_and_resumes(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = mount / "filler"  # ~1 MB left: the sweep fills it; the whole of it, freed, not
        filler.write_bytes(b"\0" * (shutil.disk_usage(mount).free - (1 << 20)))
        run = [sys.executable, "-m", "sweep", "run", str(SMOKE), "--runs-dir", str(mount)]
        first = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert first.returncode != 0
        errors = [line for line in first.stderr.splitlines() if "Traceback" in line
                  or line.startswith("error:")]
        assert errors == [next(line for line in errors if line.startswith("error: disk full"))], \
            first.stderr[-3000:]
        assert "sweep resume" in errors[0]
        assert not [p for p in mount.rglob("*") if p.name.endswith(".tmp")]
        filler.unlink()
        resumed = subprocess.run([sys.executable, "-m", "sweep", "resume",
                                  str(mount / "smoke")], cwd=REPO, capture_output=True,
                                 text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert json.loads((mount / "smoke" / STATUS_FILE).read_text())
        assert (mount / "smoke" / "best.pth").is_file()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# ---- issue 24 item 8: SIGTERM (systemd, Kubernetes, Slurm, `timeout`) stops as Ctrl-C does ----
def wait_for_a_running_trial(run_dir: Path, driver: subprocess.Popen, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        if any(e["status"] == "running" for e in read_status(run_dir).values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"no trial started (exit {driver.poll()}): {read_status(run_dir)}")


@pytest.mark.slow
def test_sigterm_stops_a_sweep_with_the_resume_hint_and_exit_143_then_resume_finishes_it(
        tmp_path):
    run_dir, log_path = tmp_path / "smoke", tmp_path / "run.log"
    with log_path.open("w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "sweep", "run", str(SMOKE),
                                   "--runs-dir", str(tmp_path)], cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_a_running_trial(run_dir, driver)
            driver.send_signal(signal.SIGTERM)
            assert driver.wait(timeout=120) == 143, log_path.read_text()[-3000:]
        finally:
            kill_driver(driver)  # its process group: nothing outlives a failed test
    output = log_path.read_text()
    assert f"unfinished   python -m sweep resume {run_dir}" in output, output[-3000:]
    for crash in ("SIGTERM received", "logging.cc", "Traceback"):  # Ray's C++ stack dump
        assert crash not in output, output[-3000:]

    resumed = subprocess.run([sys.executable, "-m", "sweep", "resume", str(run_dir)], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    statuses = read_statuses(run_dir)
    assert len(statuses) == 6 and all(e["status"] != "running" for e in statuses.values())
    assert (run_dir / "best.pth").is_file()
