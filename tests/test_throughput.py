"""The speed probe (training/throughput.py) times the loop's own model build and step, so the
num_workers it fixes is chosen at the trial's speed."""
from unittest import mock

import pytest
import torch

from data_pipeline import load_data
from tests.helpers import tiny_config
from training import loop, throughput

STEPS, WARMUP = 2, 1


@pytest.fixture(scope="module")
def data():
    return load_data(synthetic_images=20, synthetic_size=32)


def probe_with_spies(config, data):
    """The probe's result, and spies on the loop's builder, its step and gradient clipping."""
    with mock.patch.object(throughput, "build_training", wraps=loop.build_training) as build, \
            mock.patch.object(throughput, "train_step", wraps=loop.train_step) as step, \
            mock.patch.object(torch.nn.utils, "clip_grad_norm_",
                              wraps=torch.nn.utils.clip_grad_norm_) as clip:
        measured = throughput.probe_throughput(config, data, STEPS, warmup=WARMUP)
    return measured, build, step, clip


def test_the_probe_builds_and_steps_as_the_loop(tmp_path, data):
    assert throughput.build_training is loop.build_training
    assert throughput.train_step is loop.train_step
    config = tiny_config(tmp_path, grad_clip=0.5)
    measured, build, step, clip = probe_with_spies(config, data)
    assert measured["samples_per_s"] > 0 and measured["steps"] == STEPS
    build.assert_called_once_with(config, data.channels, torch.device("cpu"))
    assert step.call_count == WARMUP + STEPS
    for call in step.call_args_list:
        assert call.args[5:] == (0.5, None)  # grad_clip, amp_dtype (no autocast on a CPU)
    # The loop's step clips when the trial does; the probe's own step never did.
    assert clip.call_count == WARMUP + STEPS
    assert all(call.args[1] == 0.5 for call in clip.call_args_list)


def test_the_probe_does_not_clip_when_the_trial_does_not(tmp_path, data):
    _, _, step, clip = probe_with_spies(tiny_config(tmp_path, grad_clip=0.0), data)
    assert step.call_count == WARMUP + STEPS and clip.call_count == 0


def test_the_probe_restores_the_drivers_threads_and_kernels(tmp_path, data):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    seen = {}

    def step_noting_settings(*args):
        seen.update(threads=torch.get_num_threads(),
                    deterministic=torch.are_deterministic_algorithms_enabled())
        return loop.train_step(*args)

    config = tiny_config(tmp_path, threads=1, deterministic=not deterministic)
    with mock.patch.object(throughput, "train_step", step_noting_settings):
        throughput.probe_throughput(config, data, STEPS, warmup=WARMUP)
    assert seen == {"threads": 1, "deterministic": not deterministic}  # as the trial runs
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
