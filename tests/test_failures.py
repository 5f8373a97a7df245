"""The failure room (sweep/failures.py, training/errors.py): which errors are the storage's and
which of those are waited for, the ride-out, a failed trial's reason, out-of-memory and
disk-full text, an error as one line."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from sweep import failures
from sweep.cli.errors import one_line
from training.errors import error_line, is_disk_full_text

UNREACHABLE = OSError("When uploading part for key 'x': AWS Error NETWORK_CONNECTION during "
                      "UploadPart operation: curlCode: 7, Couldn't connect to server")
TRANSIENT = [UNREACHABLE, ConnectionResetError("reset by peer"), TimeoutError(),
             OSError("AWS Error SLOW_DOWN: please reduce your request rate (throttled)"),
             BrokenPipeError(32, "Broken pipe")]
# The storage's, but waiting does not help (or the words are too loose to wait on).
STORAGE_ONLY = [OSError("AWS Error ACCESS_DENIED: no such bucket"),
                RuntimeError("TuneError: the upload timed out"),
                FileNotFoundError("s3://bucket/run/tune/abc/result.json")]
NOT_STORAGE = [ValueError("bad learning rate"), RuntimeError("CUDA error: illegal access"),
               FileNotFoundError("/tmp/x.yaml")]


@pytest.mark.parametrize("error", TRANSIENT)
def test_an_unreachable_storage_is_waited_for_and_is_a_storage_error(error):
    assert failures.is_transient_storage_error(error)
    assert failures.is_storage_error(error)  # the waited-for kind is part of the one class


@pytest.mark.parametrize("error", STORAGE_ONLY)
def test_a_storage_error_waiting_cannot_fix_is_not_waited_for(error):
    assert failures.is_storage_error(error)
    assert not failures.is_transient_storage_error(error)


@pytest.mark.parametrize("error", NOT_STORAGE)
def test_other_errors_are_not_the_storage_s(error):
    assert not failures.is_storage_error(error)
    assert not failures.is_transient_storage_error(error)


def test_a_trial_s_error_text_says_an_outage_only_in_its_last_lines():
    traceback = ('Traceback (most recent call last):\n  File "x.py", line 3, in f\n'
                 f"    upload(timeout=3)\nOSError: {UNREACHABLE}\n")
    assert failures.is_storage_outage_text(traceback)
    assert not failures.is_storage_outage_text(
        '  File "x.py", line 3, in f\n    wait(timeout=3)\n'
        "RuntimeError: CUDA error: an illegal memory access\n")
    assert not failures.is_storage_outage_text("OSError: AWS Error ACCESS_DENIED\n")


def test_ride_out_retries_an_outage_until_the_storage_answers(monkeypatch, caplog):
    waits, answers = [], [UNREACHABLE, UNREACHABLE, "rows"]
    monkeypatch.setattr(failures.time, "sleep", waits.append)

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, logger="sweep.failures"):
        assert failures.ride_out(call, "reading", seconds=60) == "rows"
    assert waits == [0.25, 0.5]  # backing off
    warned, back = [record.getMessage() for record in caplog.records]  # once each way
    assert warned.startswith("reading: trial storage unreachable, retrying for up to 60 s "
                             "(OSError: When uploading part")
    assert back == "reading: trial storage reachable again"


def test_ride_out_raises_other_errors_at_once_and_an_outage_past_its_time(monkeypatch):
    calls = []

    def refused():
        calls.append(1)
        raise OSError("AWS Error ACCESS_DENIED")

    with pytest.raises(OSError, match="ACCESS_DENIED"):
        failures.ride_out(refused, "reading", seconds=60)
    assert len(calls) == 1

    def unreachable():
        raise UNREACHABLE

    with pytest.raises(OSError, match="Couldn't connect"):
        failures.ride_out(unreachable, "reading", seconds=0)


def test_the_ride_out_time_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(failures.RIDE_OUT_ENV, raising=False)
    assert failures.ride_out_seconds() == failures.STORAGE_RIDE_OUT_S
    monkeypatch.setenv(failures.RIDE_OUT_ENV, "2.5")
    assert failures.ride_out_seconds() == 2.5
    monkeypatch.setenv(failures.RIDE_OUT_ENV, "-1")
    assert failures.ride_out_seconds() == 0.0
    monkeypatch.setenv(failures.RIDE_OUT_ENV, "soon")
    assert failures.ride_out_seconds() == failures.STORAGE_RIDE_OUT_S


def test_raised_within_finds_the_error_a_wrapper_carries():
    class Stop(Exception):
        pass

    try:
        try:
            raise Stop("the callback's own line")
        except Stop as inner:
            raise RuntimeError("TuneError") from inner
    except RuntimeError as outer:
        assert str(failures.raised_within(outer, Stop)) == "the callback's own line"
        assert failures.raised_within(outer, KeyError) is None


def test_a_failed_trial_s_reason_is_the_last_line_of_its_error(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nValueError: bad lr\n\n")
    trial = SimpleNamespace(error_file=str(error_file), get_error=lambda: "not read")
    assert failures.error_reason(failures.trial_error_text(trial)) == "error: ValueError: bad lr"
    assert failures.error_reason("x\n" + "y" * 400) == "error: " + "y" * 300
    assert failures.error_reason("") == failures.NO_ERROR_TEXT


def test_a_trial_s_error_text_falls_back_to_ray_s_copy_and_never_raises(tmp_path):
    empty = tmp_path / "error.txt"
    empty.write_text("")
    assert failures.trial_error_text(
        SimpleNamespace(error_file=str(empty), get_error=lambda: "Ray's copy")) == "Ray's copy"
    assert failures.trial_error_text(
        SimpleNamespace(error_file=None, get_error=lambda: None)) == ""
    assert failures.trial_error_text(
        SimpleNamespace(error_file=str(tmp_path / "gone.txt"), get_error=lambda: "x")) == ""


@pytest.mark.parametrize("text", [
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
    "RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory",
    "MemoryError", "numpy.core._exceptions._ArrayMemoryError: Unable to allocate 3.1 GiB",
    "CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"])
def test_out_of_memory_reads_the_same_wherever_it_happened(text):
    assert failures.is_out_of_memory(text)


def test_other_errors_are_not_out_of_memory():
    assert not failures.is_out_of_memory("ValueError: bad learning rate")


def test_disk_full_text():
    assert is_disk_full_text("OSError: [Errno 28] No space left on device: '/tmp/x'")
    assert is_disk_full_text("RuntimeError: [Errno 28] write failed")
    assert not is_disk_full_text("OSError: [Errno 13] Permission denied")


def test_an_error_as_one_line():
    error = ValueError("first line\n  second   line")
    assert error_line(error) == "ValueError: first line second line"
    assert error_line(error, 14) == "ValueError: fi"
    assert error_line(error, None, named=False) == "first line second line"
    assert one_line(error) == "first line second line"  # the CLI's: the message alone
