"""Contracts of the private (or undocumented) parts of Ray, Optuna and W&B the project relies on:
one test per use, each failing with the API's name, the installed release and what in the
project needs it. docs/PRIVATE_APIS.md lists the uses and why no public way serves; an upgrade
that fails here needs the code named in the message changed before constraints.txt moves.

The third-party objects are used directly, not through the project's helpers, so these tests say
what the library does whatever module of ours uses it; only the two name-clash checks read our
subclasses (SweepSearch, OrderedASHA)."""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest

VERSIONS = {name: version(name) for name in ("ray", "optuna", "wandb")}


def broken(library: str, api: str, needed_by: str, change: str = "is gone or changed") -> str:
    """The failure line: what changed, in which installed release, and who needs it."""
    return f"{library} {VERSIONS[library]}: {api} {change} ({needed_by})"


def private_names(cls: type) -> set[str]:
    """The single-underscore names a class of ours defines or sets on self."""
    own = {name for name in vars(cls) if name.startswith("_") and not name.startswith("__")}
    return own | set(re.findall(r"self\.(_[A-Za-z]\w*)", inspect.getsource(cls)))


# ---- OptunaSearch's internals: sweep/search.py SweepSearch --------------------------------------
@pytest.fixture
def optuna_search():
    """Ray's OptunaSearch after one suggestion, as SweepSearch's super() leaves it."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    search = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                          metric="val_dice", mode="max", study_name="contract", storage=storage,
                          sampler=optuna.samplers.TPESampler(seed=0))
    search.suggest("trial_a")
    return SimpleNamespace(search=search, storage=storage)


def test_optuna_search_maps_ray_trial_ids_to_optuna_trials(optuna_search):
    import optuna

    trials = getattr(optuna_search.search, "_ot_trials", None)
    assert isinstance(trials, dict) and isinstance(trials.get("trial_a"), optuna.trial.Trial), \
        broken("ray", "OptunaSearch._ot_trials ({ray trial id: optuna.trial.Trial})",
               "sweep/search.py: SweepSearch reports, tags and tells a trial through it")


def test_optuna_search_holds_the_study_it_asks(optuna_search):
    import optuna

    search = optuna_search.search
    study = getattr(search, "_ot_study", None)
    assert isinstance(study, optuna.Study), broken(
        "ray", "OptunaSearch._ot_study (the optuna.Study)",
        "sweep/search.py: SweepSearch tells the study a trial's state and value itself")
    asked = search._ot_trials["trial_a"]
    assert study.get_trials(deepcopy=False)[asked.number].number == asked.number, broken(
        "ray", "OptunaSearch._ot_study.get_trials()[trial.number]",
        "sweep/search.py: SweepSearch reads an asked trial's intermediate values there")


def test_optuna_search_records_completed_trials_in_a_set(optuna_search):
    search = optuna_search.search
    assert isinstance(getattr(search, "_completed_trials", None), set), broken(
        "ray", "OptunaSearch._completed_trials (a set of ray trial ids)",
        "sweep/search.py: SweepSearch marks a trial told there, as OptunaSearch does")
    search.on_trial_complete("trial_a", {"val_dice": 0.5})
    assert "trial_a" in search._completed_trials, broken(
        "ray", "OptunaSearch.on_trial_complete adding to _completed_trials",
        "sweep/search.py: SweepSearch keeps the same record of what was told")


def test_optuna_search_keeps_the_study_storage_as_storage(optuna_search):
    assert getattr(optuna_search.search, "_storage", None) is optuna_search.storage, broken(
        "ray", "OptunaSearch._storage (the study's storage)",
        "sweep/search.py: SweepSearch must never set a _storage of its own")


def test_optuna_search_saves_a_subclass_state_with_its_own(optuna_search, tmp_path):
    """Ray pickles the searcher's whole __dict__ into searcher-state-*.pkl: SweepSearch's order
    of asks and held-back tells survive a driver restart only because of that."""
    from ray.tune.search.optuna import OptunaSearch

    search = optuna_search.search
    search._order = {"trial_a": 0}
    search.save(str(tmp_path / "searcher.pkl"))
    restored = OptunaSearch()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert getattr(restored, "_order", None) == {"trial_a": 0}, broken(
        "ray", "OptunaSearch.save/restore of the searcher's __dict__",
        "sweep/search.py: SweepSearch's ask order and pending tells must survive a resume")


def test_sweep_search_shares_only_the_names_it_means_to(optuna_search):
    """A private name Ray adds to OptunaSearch that SweepSearch also uses would be overwritten
    by one of them: a silent break no other test names."""
    from sweep.search import SweepSearch

    shared = private_names(SweepSearch) & set(dir(optuna_search.search))
    meant = {"_ot_trials", "_ot_study", "_completed_trials", "_storage"}  # _storage: read only
    assert shared <= meant, broken(
        "ray", f"OptunaSearch's {sorted(shared - meant)}", "sweep/search.py: SweepSearch's "
        "names too; rename ours, or add a contract if we mean to use Ray's", change="is new")


# ---- Tune's scheduler and trial internals: sweep/ordered_asha.py --------------------------------
def test_a_scheduler_turns_result_buffering_off_with_the_class_flag():
    import importlib

    from ray.tune.schedulers import FIFOScheduler

    class Unbuffered(FIFOScheduler):
        _supports_buffered_results = False

    reads_flag = "supports_buffered_results" in inspect.getsource(
        importlib.import_module("ray.tune.tune"))
    assert Unbuffered().supports_buffered_results is False and reads_flag, broken(
        "ray", "TrialScheduler._supports_buffered_results (read by tune.run)",
        "sweep/ordered_asha.py: OrderedASHA sees one result per call, no epoch past a rung")


def test_ordered_asha_shares_only_the_names_it_means_to():
    from ray.tune.schedulers import FIFOScheduler

    from sweep.ordered_asha import OrderedASHA

    shared = private_names(OrderedASHA) & set(dir(FIFOScheduler()))
    meant = {"_metric", "_supports_buffered_results"}  # TrialScheduler.metric reads _metric
    assert shared <= meant, broken(
        "ray", f"FIFOScheduler's {sorted(shared - meant)}", "sweep/ordered_asha.py: OrderedASHA's "
        "names too; rename ours, or add a contract if we mean to use Ray's", change="is new")


def test_a_trial_can_be_paused_by_the_scheduler():
    from ray.tune.experiment import Trial

    trial = Trial("noop", stub=True, trial_id="t1")
    trial.set_status(Trial.PAUSED)
    assert trial.status == Trial.PAUSED, broken(
        "ray", "Trial.set_status",
        "sweep/ordered_asha.py: a resumed trial waiting at a rung is filed PAUSED")


def test_a_scheduler_stops_a_trial_through_the_controller():
    from ray.tune.execution.tune_controller import TuneController

    stop_trial = getattr(TuneController, "stop_trial", None)
    parameters = list(inspect.signature(stop_trial).parameters) if stop_trial else []
    assert parameters == ["self", "trial"], broken(
        "ray", "TuneController.stop_trial(trial)",
        "sweep/ordered_asha.py: OrderedASHA stops a paused trial ASHA's rule prunes")


def test_the_search_generator_counts_trials_in_its_saved_state():
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.search_generator import SearchGenerator

    state = SearchGenerator(OptunaSearch()).get_state()
    assert state.get("counter") == 0, broken(
        "ray", "SearchGenerator.get_state()['counter']",
        "sweep/trials.py: trial numbers continue from it after a resume")


def test_asha_keeps_a_bracket_per_trial_that_records_replayed_results():
    """ResumedASHA replays a restored trial's result.json into the bracket ASHA gave it, with
    ASHA's own sign and time attribute: no public way feeds results that are not live."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from sweep.resumed_asha import ResumedASHA

    asha = ASHAScheduler(time_attr="epoch", metric="val_loss", mode="min", max_t=4,
                         grace_period=1, reduction_factor=2)
    old, new = SimpleNamespace(trial_id="old"), SimpleNamespace(trial_id="new")
    for trial in (old, new):
        asha.on_trial_add(None, trial)
    try:
        bracket = asha._trial_info["old"]
        bracket.on_result(old, 1, asha._metric_op * 0.1)
        fields = (asha._time_attr, asha._metric, asha._metric_op)
    except (AttributeError, KeyError, TypeError) as error:
        bracket, fields = None, repr(error)
    assert fields == ("epoch", "val_loss", -1.0) and asha.on_trial_result(
        None, new, {"epoch": 1, "val_loss": 0.9}) == TrialScheduler.STOP, broken(
        "ray", "ASHAScheduler._trial_info[trial_id] (a _Bracket: on_result(trial, time, signed "
               "value)), _time_attr, _metric, _metric_op",
        "sweep/resumed_asha.py: a restored trial's rung values are replayed there")
    shared = private_names(ResumedASHA) & set(dir(asha))
    assert shared <= {"_trial_info", "_time_attr", "_metric", "_metric_op"}, broken(
        "ray", f"ASHAScheduler's {sorted(shared)}", "sweep/resumed_asha.py: ResumedASHA's names "
        "too; rename ours, or add a contract if we mean to use Ray's", change="is new")


def test_asha_needs_nothing_of_a_trial_but_its_id():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    asha = ASHAScheduler(time_attr="epoch", metric="val_dice", mode="max", max_t=4,
                         grace_period=1, reduction_factor=2)
    decisions = []
    for number in range(3):
        trial = SimpleNamespace(trial_id=f"t{number}")
        asha.on_trial_add(None, trial)
        decisions.append(asha.on_trial_result(None, trial, {"epoch": 1, "val_dice": 0.1}))
    asha.on_trial_complete(None, trial, {"epoch": 1, "val_dice": 0.1})
    assert set(decisions) <= {TrialScheduler.CONTINUE, TrialScheduler.STOP}, broken(
        "ray", "ASHAScheduler driven without a TuneController, with trials that only have an id",
        "bench/lc_replay.py: the simulated searches drive ASHA that way")


# ---- ray._private: sweep/dashboard.py and sweep/exposure.py -------------------------------------
RAY_INTERNALS = """
import json, os, sys
os.environ.pop("RAY_AUTH_MODE", None)
os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
import ray
found = {"raylet_read_at_import": "ray._raylet" in sys.modules}
from ray._private import ray_constants, services
found["cluster_env_var"] = getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None)
found["cluster_flag"] = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
ray_constants.ENABLE_RAY_CLUSTER = False
found["loopback_kept"] = services.resolve_ip_for_localhost("127.0.0.1")
from ray._raylet import AuthenticationMode, get_authentication_mode
from ray._private.authentication.authentication_token_setup import _enable_token_auth
before = get_authentication_mode() == AuthenticationMode.TOKEN
_enable_token_auth()
found["token_auth"] = [before, get_authentication_mode() == AuthenticationMode.TOKEN]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def ray_internals(tmp_path_factory) -> dict:
    """What Ray's private switches do, in a fresh process (this one may hold the tests' Ray) with
    a home of its own (no token file another test left)."""
    env = {**os.environ, "HOME": str(tmp_path_factory.mktemp("home"))}
    done = subprocess.run([sys.executable, "-c", RAY_INTERNALS], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, broken("ray", "a ray._private module", done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_token_auth_turns_on_after_ray_was_imported(ray_internals):
    assert ray_internals["raylet_read_at_import"], broken(
        "ray", "ray._raylet imported by `import ray`",
        "sweep/dashboard.py: it tells whether Ray has read RAY_AUTH_MODE already")
    assert ray_internals["token_auth"] == [False, True], broken(
        "ray", "ray._private.authentication.authentication_token_setup._enable_token_auth()",
        "sweep/dashboard.py: a driver that imported ray first joins our token-auth head")


def test_the_cluster_flag_keeps_a_local_ray_on_loopback(ray_internals):
    assert ray_internals["cluster_env_var"] == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", broken(
        "ray", "ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR",
        "sweep/exposure.py sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 for a local Ray")
    assert isinstance(ray_internals["cluster_flag"], bool), broken(
        "ray", "ray._private.ray_constants.ENABLE_RAY_CLUSTER",
        "sweep/exposure.py: set when ray was imported before the variable")
    assert ray_internals["loopback_kept"] == "127.0.0.1", broken(
        "ray", "services.resolve_ip_for_localhost reading ray_constants.ENABLE_RAY_CLUSTER",
        "sweep/exposure.py: with it off, a local Ray binds to 127.0.0.1 only")


# ---- Ray's trial storage and run files: sweep/recover.py, rundir.py, status.py, diskspace.py ----
ERROR_MESSAGE = "the contract trial's own error"
ERROR_LINE = f"ValueError: {ERROR_MESSAGE}"  # the last line of Ray's error.txt


def failing_trial(config):
    """Two epochs, each with a checkpoint, then an error: what a sweep's files hold."""
    import tempfile

    from ray import tune

    for epoch in (1, 2):
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "checkpoint.pth").write_text("x")
            tune.report({"epoch": epoch, "val_dice": config["x"]},
                        checkpoint=tune.Checkpoint.from_directory(folder))
    raise ValueError(ERROR_MESSAGE)


@pytest.fixture(scope="module")
def tune_run(ray_session, tmp_path_factory):
    """One trial through Tune as a sweep runs it (OptunaSearch behind a ConcurrencyLimiter, the
    trial's folder named by its id), with what the driver's callbacks see when it fails."""
    import optuna
    from ray import cloudpickle, tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    seen = SimpleNamespace(records=[])

    class Watch(tune.Callback):
        def on_trial_error(self, iteration, trials, trial, **info):
            seen.trial = trial
            seen.error_file_text = Path(trial.error_file).read_text() if trial.error_file else ""
            seen.local_result = Path(trial.local_path or "/nonexistent", "result.json").exists()

    class Keep(logging.Handler):
        def emit(self, record):
            seen.records.append(record)

    root = tmp_path_factory.mktemp("tune_contract")
    search = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                          metric="val_dice", mode="max", points_to_evaluate=[{"x": 0.5}])
    logger, handler = logging.getLogger("ray.tune.execution.tune_controller"), Keep()
    logger.addHandler(handler)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    try:
        tune.Tuner(failing_trial, tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(search, max_concurrent=1), num_samples=1,
            trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name="tune", storage_path=str(root), verbose=0,
                                      callbacks=[Watch()],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=None))
        ).fit()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        logger.removeHandler(handler)
    assert hasattr(seen, "trial"), broken(
        "ray", "Callback.on_trial_error for a trial that raised",
        "sweep/status.py, sweep/diskspace.py and the W&B mirror record a failure there")
    seen.tune_dir = root / "tune"
    return seen


def test_a_restored_tuner_gives_back_the_callbacks_it_ran_with(tune_run):
    """Tuner.restore takes no callbacks and has no public reader of the ones it unpickled: the
    runner finishes the W&B mirror of a resumed sweep through them."""
    from ray import tune

    tuner = tune.Tuner.restore(str(tune_run.tune_dir), trainable=failing_trial)
    try:
        callbacks = tuner._local_tuner.get_run_config().callbacks or []
    except AttributeError:
        callbacks = None
    assert callbacks is not None and [type(c).__name__ for c in callbacks] == ["Watch"], broken(
        "ray", "Tuner._local_tuner.get_run_config().callbacks after Tuner.restore",
        "sweep/search.py restored_callbacks: the runner finishes a resumed sweep's W&B mirror")


def test_a_restored_tuner_runs_the_search_algorithm_of_its_tune_config(tune_run, tmp_path):
    """Tuner.restore takes no search algorithm: a resume hands Tune its own SearchGenerator
    through the TunerInternal's tune config, and Ray 2.60 restores the generator's saved Tune
    experiment with the storage path the sweep started in (the restored trials are moved, it
    is not), where new trials would be made. The spec holds that same storage object."""
    import shutil

    from ray import tune
    from ray.tune.search.search_generator import SearchGenerator

    moved = tmp_path / "moved" / "tune"
    shutil.copytree(tune_run.tune_dir, moved)
    tuner = tune.Tuner.restore(str(moved), trainable=failing_trial)
    seen = {}

    class Spy(SearchGenerator):
        def restore_from_dir(self, dirpath):
            super().restore_from_dir(dirpath)
            seen["experiment"], seen["staging"] = self._experiment, Path(dirpath)

    try:
        settings = tuner._local_tuner._tune_config
        settings.search_alg = Spy(settings.search_alg)
    except AttributeError:
        settings = None
    try:
        tuner.fit()
    finally:
        # Every restore of tune_run in this Ray session shares Ray's driver staging folder
        # (named by session and first start): the state this fit saved there would be the
        # newest one the next test's restore reads.
        kept = {path.name for path in tune_run.tune_dir.iterdir()}
        for path in seen.get("staging", Path("/nonexistent")).glob("*"):
            if path.is_file() and path.name not in kept:
                path.unlink()
    assert settings is not None and "experiment" in seen, broken(
        "ray", "Tuner._local_tuner._tune_config.search_alg run by a restored Tuner's fit",
        "sweep/search.py restore_tuner: a resume runs its ResumedSearch")
    context = getattr(seen["experiment"], "storage", None)
    assert all(hasattr(context, name) for name in (
        "storage_filesystem", "storage_fs_path", "experiment_dir_name")) and \
        seen["experiment"].spec.get("storage") is context, broken(
        "ray", "SearchGenerator._experiment.storage (a StorageContext, the spec's 'storage')",
        "sweep/search.py ResumedSearch: trials made after a resume go where it runs")
    assert context.storage_fs_path == str(tune_run.tune_dir.parent), broken(
        "ray", "a restored SearchGenerator's experiment keeping the saved storage path",
        "sweep/search.py ResumedSearch moves it; it may no longer need to",
        change="is now moved by Ray itself")


def test_resumed_search_shares_only_the_names_it_means_to():
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.search_generator import SearchGenerator

    from sweep.search import ResumedSearch

    shared = private_names(ResumedSearch) & set(dir(SearchGenerator(OptunaSearch())))
    meant = {"_experiment"}
    assert shared <= meant, broken(
        "ray", f"SearchGenerator's {sorted(shared - meant)}", "sweep/search.py: ResumedSearch's "
        "names too; rename ours, or add a contract if we mean to use Ray's", change="is new")


def test_the_experiment_state_lists_each_trial_and_its_status(tune_run):
    names = sorted(p.name for p in tune_run.tune_dir.glob("experiment_state-*.json"))
    # The timestamp in the name sorts by time: recover.py takes the last name as the newest.
    assert names and re.fullmatch(r"experiment_state-\d{4}(-\d\d){2}_\d\d(-\d\d){2}\.json",
                                  names[-1]), broken(
        "ray", f"tune/experiment_state-<time>.json (found {names})",
        "sweep/recover.py refuses a resume without it and reads the newest")
    state = json.loads((tune_run.tune_dir / names[-1]).read_text())
    entries = [json.loads(s) if isinstance(s, str) else s for s, _ in state.get("trial_data", [])]
    assert "runner_data" in state and [(e["trial_id"], e["status"]) for e in entries] == [
        (tune_run.trial.trial_id, "ERROR")], broken(
        "ray", "the experiment state's trial_data [[trial json, metadata]] and runner_data",
        "sweep/recover.py reads each trial's id and status before a resume")


def test_the_searcher_state_is_a_whole_pickle(tune_run):
    files = sorted(tune_run.tune_dir.glob("searcher-state-*.pkl"))
    assert files and files[-1].read_bytes().endswith(b"."), broken(
        "ray", "tune/searcher-state-<time>.pkl (a pickle: ends with its STOP opcode)",
        "sweep/recover.py tells a torn searcher state by its last byte")


def test_a_restored_run_takes_its_trial_count_from_the_saved_search_generator(tune_run,
                                                                              tmp_path):
    """`extend` raises the count Ray restores: Tune never re-adds the experiment on a resume, so
    TuneConfig.num_samples is ignored and the newest search_gen_state-<time>.json (a cloudpickle
    of SearchGenerator.get_state()) decides; the searcher state beside it is a plain pickle of
    OptunaSearch's __dict__, which extend rewrites with SweepSearch's raised total."""
    import pickle
    import shutil

    from ray import cloudpickle, tune

    copy = tmp_path / "tune"
    shutil.copytree(tune_run.tune_dir, copy)
    names = sorted(p.name for p in copy.glob("search_gen_state-*.json"))
    state = cloudpickle.loads((copy / names[-1]).read_bytes()) if names else {}
    assert state.get("total_samples") == 1 and "finished" in state, broken(
        "ray", f"tune/search_gen_state-<time>.json with total_samples and finished (found "
               f"{names}: {sorted(state)})", "sweep/extend.py raises the trial count there")
    searchers = sorted(copy.glob("searcher-state-*.pkl"))
    assert isinstance(pickle.loads(searchers[-1].read_bytes()).get("_ot_trials"), dict), broken(
        "ray", "tune/searcher-state-<time>.pkl (pickle.dumps of OptunaSearch.__dict__)",
        "sweep/extend.py raises SweepSearch's total and takes tells back there")
    state.update(total_samples=2, finished=False)
    (copy / names[-1]).write_bytes(cloudpickle.dumps(state))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the new trial runs
    try:
        results = tune.Tuner.restore(str(copy), trainable=failing_trial).fit()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(results) == 2, broken(
        "ray", "a restored Tuner making trials up to the saved SearchGenerator total_samples",
        "sweep/extend.py: an extended sweep gets its new trials that way")


def test_a_trial_folder_holds_ray_s_files_by_the_names_we_read(tune_run):
    folder = tune_run.tune_dir / tune_run.trial.trial_id
    rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()
            if line.strip()]
    checkpoints = sorted(p.name for p in folder.glob("checkpoint_*"))
    assert checkpoints == ["checkpoint_000000", "checkpoint_000001"], broken(
        "ray", f"checkpoint_NNNNNN trial folders (found {checkpoints})",
        "sweep/rundir.py and trainable.py take the newest as the greatest name")
    assert [r.get("checkpoint_dir_name") for r in rows] == checkpoints, broken(
        "ray", "result.json's checkpoint_dir_name column",
        "sweep/rundir.py keeps the best row's checkpoint when it prunes")
    assert (folder / "params.json").is_file() and (folder / "error.txt").is_file(), broken(
        "ray", "params.json and error.txt in the trial folder",
        "sweep/recover.py and the report read a trial's config and error there")


@pytest.mark.parametrize("logger_name, file_name", [("JsonLoggerCallback", "result.json"),
                                                     ("CSVLoggerCallback", "progress.csv")])
def test_tune_s_loggers_copy_the_stored_file_over_the_driver_s_when_a_trial_starts(
        tmp_path, logger_name, file_name):
    """Each start of a trial with a checkpoint (a PAUSED trial continuing, too) goes through
    ``_restore_from_remote(file_name, trial)``, which copies the storage's file over the
    driver's newer one. sweep/result_log.py overrides that method to keep the driver's."""
    import pyarrow.fs
    import ray.tune.logger as loggers

    class Trial:  # what the loggers read of a trial
        config, checkpoint = {}, object()
        local_path, storage = str(tmp_path / "driver"), SimpleNamespace(
            trial_fs_path=str(tmp_path / "stored"),
            storage_filesystem=pyarrow.fs.LocalFileSystem())

        def init_local_path(self):
            Path(self.local_path).mkdir(parents=True, exist_ok=True)

    for folder, text in (("driver", "driver's newer rows\n"), ("stored", "uploaded\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / file_name).write_text(text)
    logger = getattr(loggers, logger_name)()
    calls = []
    restore = logger._restore_from_remote
    logger._restore_from_remote = lambda name, trial: (calls.append(name), restore(name, trial))
    trial = Trial()
    logger.log_trial_start(trial) if hasattr(logger, "_trial_configs") else \
        logger._setup_trial(trial)
    logger.log_trial_end(trial)
    assert calls == [file_name], broken(
        "ray", f"{logger_name}._restore_from_remote(file_name, trial) on a trial's start",
        "sweep/result_log.py overrides it so a continued trial keeps the driver's rows")
    assert (tmp_path / "driver" / file_name).read_text() == "uploaded\n", broken(
        "ray", f"{logger_name} copying the stored {file_name} over the driver's",
        "sweep/result_log.py keeps the driver's copy; with Ray fixed, it is no longer needed",
        change="no longer happens")


def test_a_failed_trial_s_error_is_readable_when_the_callback_runs(tune_run):
    assert tune_run.error_file_text.strip().splitlines()[-1:] == [ERROR_LINE], broken(
        "ray", "Trial.error_file (the driver's error.txt, the exception last)",
        "sweep/failures.py trial_error_text: a failed trial's reason, disk-full and outages")
    assert ERROR_LINE in str(tune_run.trial.get_error() or ""), broken(
        "ray", "Trial.get_error() (the storage copy of error.txt)",
        "sweep/failures.py trial_error_text falls back to it")
    assert tune_run.local_result, broken(
        "ray", "Trial.local_path/result.json (the driver's copy)",
        "sweep/status.py uploads it to a URI storage as a trial ends")


def test_a_trial_names_its_storage_as_the_callbacks_read_it(tune_run):
    from ray.train._internal.storage import StorageContext

    trial = tune_run.trial
    storage = trial.storage
    assert isinstance(storage, StorageContext) and storage.trial_dir_name == trial.trial_id \
        and trial.experiment_dir_name == "tune", broken(
            "ray", "Trial.storage (ray.train._internal.storage.StorageContext).trial_dir_name "
                   "and Trial.experiment_dir_name",
            "sweep/wandb_mirror/callback.py finds a panel in the trial storage by them")
    assert Path(trial.path) == tune_run.tune_dir / trial.trial_id \
        and hasattr(storage, "storage_filesystem"), broken(
            "ray", "Trial.path and StorageContext.storage_filesystem",
            "sweep/ordered_asha.py replays a resumed trial's result.json from them")


def test_the_trial_tag_starts_with_its_creation_count(tune_run):
    trial = tune_run.trial
    assert trial.experiment_tag.startswith("1_") and trial.has_reported_at_least_once, broken(
        "ray", f"Trial.experiment_tag '<count from 1>_<params>' (got {trial.experiment_tag!r})",
        "sweep/trials.py trial_number: trial names and OrderedASHA's order come from it")


def test_a_failed_trial_is_logged_where_the_disk_full_filter_listens(tune_run):
    logged = [r for r in tune_run.records if r.exc_info and ERROR_MESSAGE in str(r.exc_info[1])]
    assert logged, broken(
        "ray", "the 'ray.tune.execution.tune_controller' logger of a trial's failure",
        "sweep/diskspace.py filters disk-full tracebacks on that logger")


# ---- Optuna's journal file: sweep/recover.py repair_journal -------------------------------------
def test_the_study_journal_is_one_json_record_per_line(tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "study.journal"

    def storage():
        return JournalStorage(JournalFileBackend(str(path)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="contract", storage=storage(), direction="maximize")
    for value in (0.1, 0.2):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, value)
    text = path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert text.endswith("\n") and all(isinstance(r, dict) for r in records), broken(
        "optuna", "the journal file's format (one JSON object per line)",
        "sweep/recover.py finds a torn record by its line")
    path.write_text("".join(line + "\n" for line in text.splitlines()[:-1]))
    trials = optuna.load_study(study_name="contract", storage=storage()).get_trials()
    assert [t.number for t in trials] == [0, 1], broken(
        "optuna", "a journal without its last record still loading",
        "sweep/recover.py cuts a torn last record off and resumes the study")


def test_a_trial_added_running_to_a_new_journal_is_told_through_the_old_trial(tmp_path):
    """`extend` rewinds the study (sweep/extend.py rewind_study): a new journal, renamed over
    the old, holds the same trials in the same order with some RUNNING again (add_trial of a
    RUNNING create_trial). The searcher then tells them through the optuna Trial objects it
    pickled, which address a trial by its storage id: the new journal must give each trial the
    id it had. (The pickled file backend remembers byte offsets of the old file: a resume gives
    the unpickled storage a fresh backend, SweepSearch.use_journal_of, and so does this test.)"""
    import pickle

    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path, space = tmp_path / "study.journal", {"x": FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(study_name="contract", direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(path))))
    asked = [study.ask(space) for _ in range(2)]
    for trial in asked:
        study.tell(trial, 0.5)
    saved = pickle.dumps(asked[1])  # as the searcher state holds it, with its study
    old = study.get_trials(deepcopy=True)
    rewritten = optuna.create_study(
        study_name="contract", direction="maximize",
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "new.journal"))))
    rewritten.add_trial(old[0])
    rewritten.add_trial(optuna.trial.create_trial(
        state=TrialState.RUNNING, params=old[1].params, distributions=old[1].distributions,
        intermediate_values={1: 0.25}))
    os.replace(tmp_path / "new.journal", path)
    trial = pickle.loads(saved)
    trial.study._storage._backend = JournalFileBackend(str(path))  # as use_journal_of does
    try:
        trial.study.tell(trial, 0.75)
        trials = optuna.load_study(study_name="contract", storage=JournalStorage(
            JournalFileBackend(str(path)))).get_trials()
    except Exception as error:  # noqa: BLE001 - any failure is the contract's
        trials = [error]
    assert [(t.number, t.state, t.value, t.intermediate_values) for t in trials] == [
        (0, TrialState.COMPLETE, 0.5, {}), (1, TrialState.COMPLETE, 0.75, {1: 0.25})], broken(
        "optuna", f"add_trial(RUNNING) keeping trial ids, told via an unpickled Trial ({trials})",
        "sweep/extend.py rewind_study: the searcher tells the rewound trials again")


def test_a_journal_storage_moves_with_its_backend_after_unpickling(tmp_path):
    """A resumed searcher's study was pickled with the absolute path of its journal: the
    study, its asked trials and the searcher share one unpickled JournalStorage, and giving it
    another file's backend makes all of them write there."""
    import pickle
    import shutil

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first, second = tmp_path / "first.journal", tmp_path / "second.journal"
    storage = JournalStorage(JournalFileBackend(str(first)))
    study = optuna.create_study(study_name="contract", storage=storage, direction="maximize")
    saved = pickle.dumps({"storage": storage, "study": study, "trial": study.ask()})
    shutil.copy(first, second)
    before = first.read_bytes()
    state = pickle.loads(saved)
    try:
        state["storage"]._backend = JournalFileBackend(str(second))
        state["trial"].report(0.5, 1)
        state["study"].tell(state["trial"], 0.5)
    except (AttributeError, KeyError) as error:
        pytest.fail(broken("optuna", f"JournalStorage._backend ({error})",
                           "sweep/search.py SweepSearch.use_journal_of"))
    moved = optuna.load_study(study_name="contract",
                              storage=JournalStorage(JournalFileBackend(str(second))))
    assert first.read_bytes() == before and moved.trials[0].value == 0.5, broken(
        "optuna", "JournalStorage._backend (the file an unpickled study writes to)",
        "sweep/search.py SweepSearch.use_journal_of: a copied run's resume tells its own study")


# ---- W&B's x_ settings: sweep/wandb_mirror/writer.py ---------------------------------------------
@pytest.mark.parametrize("name", ["x_disable_stats", "x_disable_machine_info"])
def test_wandb_takes_the_experimental_settings_the_writer_passes(name):
    import wandb

    try:
        value = getattr(wandb.Settings(**{name: True}), name)
    except Exception as error:  # noqa: BLE001 - Settings forbids an unknown field
        value = error
    assert value is True, broken(
        "wandb", f"wandb.Settings({name}=True) ({value!r})",
        "sweep/wandb_mirror/writer.py: one run per trial without a system-metrics thread "
        "or a machine scan each")


# ---- Ray Tune's interrupted-run hint: sweep/ray_session.py --------------------------------------
def test_an_interrupted_tune_run_logs_its_restore_hint_where_the_filter_listens():
    import importlib

    from sweep.ray_session import RAY_RESUME_HINT, RAY_RUN_LOGGER

    tune_module = importlib.import_module("ray.tune.tune")
    assert (tune_module.logger.name == RAY_RUN_LOGGER
            and RAY_RESUME_HINT in inspect.getsource(tune_module.run)), broken(
        "ray", f"tune.run's {RAY_RESUME_HINT!r} warning on the {RAY_RUN_LOGGER!r} logger",
        "sweep/ray_session.py drops it: after Ctrl-C the summary says `python -m sweep resume`")
