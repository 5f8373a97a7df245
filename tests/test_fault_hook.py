"""The tests' fault-injection hook (CRACK_SWEEP_FAULTS, sweep/faults.py): checked strictly, raises
where it says (a real CPU allocation failure for oom_when); not part of the experiment file (the
sweeps that use it are in tests/test_sweep.py)."""
from __future__ import annotations

import pytest
import torch

from sweep.faults import ENV_VAR, Faults, fault_injector, faults_from_env
from training.settings import ConfigError


def test_unset_or_empty_means_no_faults():
    assert faults_from_env({}) is None and faults_from_env({ENV_VAR: " "}) is None


def test_reads_the_four_keys():
    faults = faults_from_env({ENV_VAR: '{"oom_when": {"batch_size": 2}, "oom_epoch": 2, '
                                       '"error_when": {"seed": 1}, "error_epoch": 3}'})
    assert faults == Faults({"batch_size": 2}, 2, {"seed": 1}, 3)


@pytest.mark.parametrize("text, message", [
    ("{oom_when: 1}", "not valid JSON"),
    ('["oom_when"]', "must be a mapping"),
    ('{"oom_whenn": {}}', "unknown key oom_whenn"),
    ('{"oom_epoch": "one"}', "oom_epoch = 'one' should be an integer"),
    ('{"oom_epoch": true}', "oom_epoch = True should be an integer"),
    ('{"oom_when": [2]}', "oom_when = [2] should be a mapping"),
    ('{"oom_epoch": 0}', "oom_epoch = 0 should be at least 1"),
    ('{"error_epoch": 1}', "error_epoch = 1 should be 2 or more"),
    ('{"error_when": {"batch": 2}}', "error_when.batch names no training setting"),
])
def test_bad_content_is_one_line_naming_the_variable(text, message):
    with pytest.raises(ConfigError) as error:
        faults_from_env({ENV_VAR: text})
    assert str(error.value).startswith(f"{ENV_VAR}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_injector_raises_for_matching_trials_at_the_chosen_epoch():
    faults = Faults(oom_when={"batch_size": 2}, error_when={"seed": 1}, error_epoch=2)
    fault_injector(faults, {"batch_size": 4, "seed": 0}, resumed=False)(1)  # no match: nothing
    with pytest.raises(RuntimeError, match="can't allocate memory") as caught:
        fault_injector(faults, {"batch_size": 2}, resumed=False)(1)
    assert not isinstance(caught.value, torch.OutOfMemoryError)  # what a real CPU OOM raises
    crash = fault_injector(faults, {"seed": 1}, resumed=False)
    crash(1)
    with pytest.raises(RuntimeError, match=f"injected by {ENV_VAR}"):
        crash(2)
    fault_injector(faults, {"seed": 1}, resumed=True)(2)  # a retry gets past it
    fault_injector(None, {"seed": 1}, resumed=False)(2)  # real sweeps: no faults
