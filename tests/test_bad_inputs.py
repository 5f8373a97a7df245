"""Bad input from a user (experiment and settings files, overrides, checkpoints, images,
out-of-memory trials; issue 15 items 4, 5, 7-9): each is one line and exit 2, or the right
verdict, never a traceback. docs/BAD_INPUT.md lists what is refused and how."""
from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sweep.__main__ import main
from training.config import TrainConfig
from training.settings import ConfigError

# ---- bad input from a user: one line, exit 2, nothing written (issue 15, items 4, 5, 7-9) -------
# Each case below was a traceback, a silent wrong result or a runaway allocation once;
# docs/BAD_INPUT.md lists what is refused and how.

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"
NO_GPU = not torch.cuda.is_available()


def one_error_line(capsys, limit: int = 800) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err[:2000]
    assert err.startswith("error: ") and "Traceback" not in err, err[:2000]
    assert len(err) < limit, err[:2000]  # values are quoted cut short
    return err


def smoke_with(section: str, key: str, value: str) -> str:
    """smoke.yaml's text with one setting replaced by raw YAML ``value``."""
    lines = SMOKE.read_text().splitlines()
    start = lines.index(f"{section}:") if section else 0
    for i in range(start, len(lines)):
        if lines[i].strip().startswith(f"{key}:"):
            indent = "  " if section else ""
            lines[i] = f"{indent}{key}: {value}"
            return "\n".join(lines) + "\n"
    raise AssertionError(f"{section}.{key} not in smoke.yaml")


BOMB_YAML = ('a: &a ["x","x","x","x","x","x","x","x","x"]\n'
             + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9)
                       + "]\n" for i in range(8))
             + "description: *i\n")

# name -> (file content (str or bytes; None: a folder), words the one line must hold)
BAD_FILES = {
    "non-UTF-8 bytes": (b"name: caf\xe9\n", ["not UTF-8", "0xe9"]),
    "a folder": (None, ["is a folder"]),
    "empty": ("", ["empty experiment file"]),
    "comments only": ("# nothing\n", ["empty experiment file"]),
    "a list at the top": ("- a\n- b\n", ["expected a mapping", "list"]),
    "a scalar at the top": ("42\n", ["expected a mapping", "int"]),
    "10 MB": ("description: '" + "x" * 10_000_000 + "'\n", ["larger than 1024 KiB"]),
    "50,000 nested brackets": ("description: " + "[" * 50_000 + "]" * 50_000 + "\n",
                               ["nested more than 20 levels"]),
    "alias bomb in description": (BOMB_YAML, ["aliases", "not accepted"]),
    "one harmless alias": (SMOKE.read_text() + "x: &n 3\ny: *n\n", ["aliases"]),
    "a number as key": (SMOKE.read_text() + "1: 2\n", ["unknown key 1"]),
    "a key twice": (SMOKE.read_text() + "name: other\n", ["key 'name' appears twice"]),
    "reduction_factor .inf": (smoke_with("scheduler", "reduction_factor", ".inf"),
                              ["scheduler.reduction_factor", "inf", "finite"]),
    "reduction_factor 1.000000001": (smoke_with("scheduler", "reduction_factor", "1.000000001"),
                                     ["scheduler.reduction_factor", "at most 100 ASHA rungs"]),
    "reduction_factor 1.01": (smoke_with("scheduler", "reduction_factor", "1.01"),
                              ["at most 100 ASHA rungs"]),
    "reduction_factor .nan": (smoke_with("scheduler", "reduction_factor", ".nan"), ["finite"]),
    "max_epochs 10**9": (smoke_with("scheduler", "max_epochs", "1000000000"),
                         ["scheduler.max_epochs"]),
    "synthetic_size 100000": (smoke_with("train", "synthetic_size", "100000"),
                              ["train.synthetic_size = 100000", "at most 4096"]),
    "synthetic set over 4 GiB": (smoke_with("train", "synthetic_size", "512").replace(
        "synthetic_images: 128", "synthetic_images: 20000"),
                                 ["GiB", "fewer or smaller"]),
    "resources.cpus 1e-9": (smoke_with("resources", "cpus", "1e-9"),
                            ["resources.cpus = 1e-09", "between 0.01 and 1024"]),
    "resources.cpus 1.0e-9": (smoke_with("resources", "cpus", "1.0e-9"),
                              ["resources.cpus = 1e-09", "between 0.01 and 1024"]),
    "negative gpus": (smoke_with("resources", "gpus", "-1"), ["resources.gpus = -1"]),
    "gpus 1e-9": (smoke_with("resources", "gpus", "1.0e-9"), ["resources.gpus"]),
    "gpus .inf": (smoke_with("resources", "gpus", ".inf"), ["resources.gpus", "finite"]),
    "device cudaXYZ": (smoke_with("train", "device", "cudaXYZ"),
                       ["train.device = 'cudaXYZ'", "cuda:N"]),
    "device cuda:-1": (smoke_with("train", "device", '"cuda:-1"'), ["train.device = 'cuda:-1'"]),
    "device cuda:99 without GPUs": (smoke_with("train", "device", "cuda:99"),
                                    ["'cuda:99'", "resources.gpus = 0"]),
    "device cuda, no GPU reserved": (smoke_with("train", "device", "cuda"),
                                     ["'cuda'", "reserves no GPU"]),
    "device cuda:99 with a GPU reserved": (
        smoke_with("train", "device", "cuda:99").replace("gpus: 0", "gpus: 1"),
        ["'cuda:99'", "numbered from 0"]),
    "weight_decay -1": (smoke_with("train", "optimizer", "adamw\n  weight_decay: -1"),
                        ["train.weight_decay = -1.0", "between 0 and 1"]),
    "weight_decay .nan": (smoke_with("train", "optimizer", "adamw\n  weight_decay: .nan"),
                          ["train.weight_decay = nan", "finite"]),
    "momentum -5": (smoke_with("train", "optimizer", "adamw\n  momentum: -5"),
                    ["train.momentum = -5.0"]),
    "momentum 1": (smoke_with("train", "optimizer", "adamw\n  momentum: 1"), ["train.momentum"]),
    "lr .nan": (smoke_with("train", "optimizer", "adamw\n  lr: .nan"), ["train.lr = nan"]),
    "lr 1e400": (smoke_with("train", "optimizer", "adamw\n  lr: 1.0e+400"), ["train.lr = inf"]),
    "val_percent .inf": (smoke_with("train", "optimizer", "adamw\n  val_percent: .inf"),
                         ["train.val_percent = inf"]),
    "scale .inf": (smoke_with("train", "optimizer", "adamw\n  scale: .inf"), ["train.scale"]),
    "grad_clip -.inf": (smoke_with("train", "optimizer", "adamw\n  grad_clip: -.inf"),
                        ["train.grad_clip"]),
    "width 10**30": (smoke_with("train", "width", "1" + "0" * 30),
                     ["train.width", "64 bits"]),
    "width of 5,000 digits": (smoke_with("train", "width", "9" * 5000), ["Exceeds the limit"]),
    "width 100000": (smoke_with("train", "width", "100000"), ["train.width", "at most 256"]),
    "batch_size 10**9 searched": (smoke_with("space", "batch_size", "{choice: [2, 1000000000]}"),
                                  ["space.batch_size.choice[1]", "at most 4096"]),
    "seed 2**40": (smoke_with("search", "seed", "1099511627776"),
                   ["search.seed", "at most 4294967295"]),
    "uniform through NaN": (smoke_with("space", "lr", "{uniform: [.nan, 0.01]}"),
                            ["space.lr.uniform[0]", "finite"]),
    "a 1,000-character space key": (smoke_with("space", "batch_size", "{choice: [2, 4]}\n  "
                                                + "k" * 1000 + ": {int: [0, 9]}"),
                                    ["space.kkk", "... is not a training setting"]),
    "2,000 choices": (smoke_with("space", "batch_size", "{choice: [" + ", ".join(
        ["4"] * 2000) + "]}"), ["space.batch_size.choice", "at most 1000 values"]),
    "trials 1e12 (a float)": (smoke_with("search", "trials", "1e12"),
                              ["search.trials", "an integer"]),
    "trials 10**12": (smoke_with("search", "trials", "1000000000000"),
                      ["search.trials", "at most 100000"]),
    "search seed -1": (smoke_with("search", "seed", "-1"), ["search.seed = -1"]),
    "time_budget_s .inf": (smoke_with("search", "trials", "6\n  time_budget_s: .inf"),
                           ["search.time_budget_s", "finite"]),
    "confirm.seeds 10**6": (smoke_with("confirm", "seeds", "1000000"), ["confirm.seeds"]),
    "drain_timeout_s .nan": (smoke_with("", "wandb", "{drain_timeout_s: .nan}"),
                             ["wandb.drain_timeout_s", "finite"]),
    "a 5,000-character name": (smoke_with("", "name", "'" + "x/" * 2500 + "'"),
                               ["name = 'x/x/", "..."]),
    "a 5,000-character model": (smoke_with("train", "model", "m" * 5000),
                                ["train.model = 'mmm", "..."]),
    "a huge wrong-typed value": (smoke_with("search", "trials", "[" + "1, " * 5000 + "1]"),
                                 ["search.trials = [1, 1,", "...", "an integer"]),
}


def write_case(path: Path, content) -> Path:
    """A case's settings file: text, raw bytes, or (None) a folder where the file should be."""
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_experiment_file(case, tmp_path, capsys):
    content, words = BAD_FILES[case]
    path = write_case(tmp_path / "exp.yaml", content)
    runs = tmp_path / "runs"
    assert main(["run", str(path), "--runs-dir", str(runs)]) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word in err, err
    assert not runs.exists()  # refused before Ray started


BAD_OVERRIDES = {
    "lr nan": ("--train.lr=.nan", ["train.lr = nan", "finite"]),
    "reduction_factor 1.000000001": ("--scheduler.reduction_factor=1.000000001", ["ASHA rungs"]),
    "reduction_factor inf": ("--scheduler.reduction_factor=.inf", ["finite"]),
    "device cudaXYZ": ("--train.device=cudaXYZ", ["'cudaXYZ'"]),
    "weight_decay -1": ("--train.weight_decay=-1", ["train.weight_decay = -1.0"]),
    "trials 1e12": ("--search.trials=1e12", ["search.trials"]),
    "cpus 1e-9": ("--resources.cpus=1e-9", ["resources.cpus"]),
    "synthetic_size 100000": ("--train.synthetic_size=100000", ["train.synthetic_size"]),
    "50,000 brackets": ("--search.trials=" + "[" * 50_000, ["search.trials", "'[[[["]),
    "an alias": ("--search.trials=*x", ["search.trials = '*x'"]),
    "5,000 digits": ("--train.width=" + "9" * 5000, ["train.width = '9999", "..."]),
    "a long name": ("--name=" + "n" * 5000 + "/", ["name = 'nnn", "..."]),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES), ids=list(BAD_OVERRIDES))
def test_bad_override(case, tmp_path, capsys):
    flag, words = BAD_OVERRIDES[case]
    runs = tmp_path / "runs"
    assert main(["run", str(SMOKE), flag, "--runs-dir", str(runs)]) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word in err, err
    assert not runs.exists()


BAD_TRAIN = {
    "config: non-UTF-8": ("config", b"lr: \xff\n", ["not UTF-8"]),
    "config: a folder": ("config", None, ["is a folder"]),
    "config: empty": ("config", "", ["empty settings file"]),
    "config: a list": ("config", "- 1\n", ["expected a mapping"]),
    "config: alias bomb": ("config", BOMB_YAML.replace("description", "data_dir"), ["aliases"]),
    "config: nested brackets": ("config", "data_dir: " + "[" * 50_000 + "]" * 50_000,
                                ["nested more than"]),
    "config: lr .nan": ("config", "lr: .nan\n", ["lr = nan"]),
    "config: width 10**30": ("config", "width: " + "9" * 30 + "\n", ["width"]),
    "config: width of 5,000 digits": ("config", "width: " + "9" * 5000, ["4300 digits"]),
    "flag: --lr nan": ("flags", ["--lr", "nan"], ["lr = nan", "finite"]),
    "flag: --weight-decay -1": ("flags", ["--weight-decay", "-1"], ["weight_decay = -1.0"]),
    "flag: --momentum -5": ("flags", ["--momentum", "-5"], ["momentum = -5.0"]),
    "flag: --device cudaXYZ": ("flags", ["--device", "cudaXYZ"], ["'cudaXYZ'"]),
    "flag: --device cuda:-1": ("flags", ["--device", "cuda:-1"], ["'cuda:-1'"]),
    "flag: --device cuda:99": ("flags", ["--device", "cuda:99"],
                               ["no CUDA GPU" if NO_GPU else "numbered from 0"]),
    "flag: --synthetic-size 100000": ("flags", ["--synthetic-size", "100000"],
                                      ["synthetic_size = 100000"]),
    "flag: --batch-size 10**9": ("flags", ["-b", "1000000000"], ["batch_size"]),
    "flag: --val-percent inf": ("flags", ["-v", "inf"], ["val_percent = inf"]),
}


@pytest.mark.parametrize("case", list(BAD_TRAIN), ids=list(BAD_TRAIN))
def test_bad_train_settings(case, tmp_path, capsys):
    kind, content, words = BAD_TRAIN[case]
    out = tmp_path / "out"
    argv = ["train", "--out-dir", str(out)]
    if kind == "flags":
        argv += content
    else:
        argv += ["--config", str(write_case(tmp_path / "c.yaml", content))]
    assert main(argv) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word in err, err
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--seeds", "1000000000"], ["--top-k", "0"]])
def test_bad_confirm_flags_are_one_line(tmp_path, capsys, flags):
    assert main(["confirm", str(tmp_path / "runs" / "x"), *flags]) == 2
    assert f"{flags[0]} = " in one_error_line(capsys)


def test_the_bad_files_are_one_line_in_a_real_process_too(tmp_path):
    """The deepest cases again, in `python -m sweep` itself (its own recursion limit)."""
    for name in ("50,000 nested brackets", "alias bomb in description", "non-UTF-8 bytes"):
        content = BAD_FILES[name][0]
        path = tmp_path / "exp.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        done = subprocess.run([sys.executable, "-m", "sweep", "run", str(path), "--runs-dir",
                               str(tmp_path / "runs")], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip().startswith("error: ") and "Traceback" not in done.stderr
        assert not (tmp_path / "runs").exists()


# ---- checkpoints: damaged, non-finite, hand-made or from other settings (items 4 and 9) ---------
TINY = ["--width", "4", "--synthetic-images", "16", "--synthetic-size", "32", "-b", "4",
        "--threads", "1"]


@pytest.fixture(scope="module")
def adamw_checkpoint(tmp_path_factory) -> Path:
    """One epoch with AdamW and a cosine schedule (the defaults are RMSprop and plateau)."""
    out = tmp_path_factory.mktemp("adamw")
    assert main(["train", *TINY, "-e", "1", "--optimizer", "adamw", "--scheduler", "cosine",
                 "--out-dir", str(out)]) == 0
    return out / "checkpoints" / "checkpoint_epoch1.pth"


def first_tensor_offset(path: Path) -> int:
    """Where the bytes of the archive's first tensor (data/0) start in the file."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length


def damaged_copy(source: Path, target: Path, patch: bytes, offset: int = 0) -> Path:
    data = bytearray(source.read_bytes())
    start = first_tensor_offset(source) + offset
    data[start:start + len(patch)] = patch
    target.write_bytes(bytes(data))
    return target


def a_png(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(path)
    return path


def test_torch_save_archives_carry_a_crc_per_entry(adamw_checkpoint):
    with zipfile.ZipFile(adamw_checkpoint) as archive:
        assert archive.testzip() is None
        assert all(info.CRC != 0 for info in archive.infolist() if info.file_size)
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


@pytest.mark.parametrize("patch, offset", [(b"\x7f\xc0\x00\x00" * 16, 0),  # 64 bytes of NaN
                                           (b"\x01", 5)],  # one byte flipped
                         ids=["64 bytes of NaN", "one byte"])
def test_damaged_checkpoint_is_refused_by_predict_and_train(adamw_checkpoint, tmp_path, capsys,
                                                            patch, offset):
    original = adamw_checkpoint.read_bytes()[first_tensor_offset(adamw_checkpoint) + offset]
    if len(patch) == 1:
        patch = bytes([original ^ 0xFF])
    bad = damaged_copy(adamw_checkpoint, tmp_path / "best.pth", patch, offset)
    out = tmp_path / "mask.png"
    assert main(["predict", "-m", str(bad), "-i", str(a_png(tmp_path)), "-o", str(out)]) == 2
    err = one_error_line(capsys)
    assert "damaged" in err and "data/0" in err and str(bad) in err
    assert not out.exists()
    assert main(["train", *TINY, "-e", "2", "--optimizer", "adamw", "--scheduler", "cosine",
                 "-f", str(bad), "--out-dir", str(tmp_path / "o")]) == 2
    assert "damaged" in one_error_line(capsys)


def test_non_finite_weights_are_refused_even_with_a_good_checksum(adamw_checkpoint, tmp_path,
                                                                   capsys):
    payload = torch.load(adamw_checkpoint, weights_only=True)
    name = next(iter(payload["model"]))
    payload["model"][name] = torch.full_like(payload["model"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pth")  # a diverged run saves exactly this
    assert main(["predict", "-m", str(tmp_path / "nan.pth"), "-i", str(a_png(tmp_path))]) == 2
    err = one_error_line(capsys)
    assert "NaN or infinite" in err and name in err


def test_resume_with_another_optimizer_or_schedule_says_which_flags(adamw_checkpoint, tmp_path,
                                                                    capsys):
    # The default command line (RMSprop, plateau) on an AdamW + cosine checkpoint: was
    # KeyError: 'square_avg' at the first step.
    assert main(["train", *TINY, "-e", "2", "-f", str(adamw_checkpoint),
                 "--out-dir", str(tmp_path / "a")]) == 2
    err = one_error_line(capsys)
    assert "trained with optimizer='adamw', scheduler='cosine'" in err
    assert "pass --optimizer adamw --scheduler cosine" in err
    assert main(["train", *TINY, "-e", "2", "--optimizer", "adamw", "-f", str(adamw_checkpoint),
                 "--out-dir", str(tmp_path / "b")]) == 2
    assert "pass --scheduler cosine" in one_error_line(capsys)
    # ... and with the flags it names, the resume runs.
    assert main(["train", *TINY, "-e", "2", "--optimizer", "adamw", "--scheduler", "cosine",
                 "-f", str(adamw_checkpoint), "--out-dir", str(tmp_path / "c")]) == 0


def drop(key):
    return lambda p: p.pop(key)


def without_config_key(key):
    return lambda p: p["config"].pop(key)


def set_to(key, value):
    return lambda p: p.__setitem__(key, value)


def drop_optimizer_entry(entry):
    return lambda p: [state.pop(entry) for state in p["optimizer"]["state"].values()]


def reshape_optimizer_entry(entry):
    def change(payload):
        state = payload["optimizer"]["state"][0]
        state[entry] = torch.zeros(3, 3)
    return change


HAND_MADE = {
    "no model": (drop("model"), ["no 'model'"]),
    "no epoch": (drop("epoch"), ["no 'epoch'"]),
    "epoch as a string": (set_to("epoch", "1"), ["'epoch' is a str"]),
    "epoch as a bool": (set_to("epoch", True), ["'epoch' is a bool"]),
    "epoch 0": (set_to("epoch", 0), ["'epoch' is 0"]),
    "config without width": (without_config_key("width"), ["config lacks width"]),
    "config without optimizer": (without_config_key("optimizer"), ["config lacks optimizer"]),
    "config as a list": (set_to("config", [1, 2]), ["'config' is a list"]),
    "mask_values as a string": (set_to("mask_values", "01"), ["'mask_values' is a str"]),
    "model weights not tensors": (set_to("model", {"a": 1}), ["neither this project's format"]),
    "optimizer state without exp_avg": (drop_optimizer_entry("exp_avg"),
                                        ["optimizer state cannot be restored", "exp_avg"]),
    "optimizer state of another shape": (reshape_optimizer_entry("exp_avg"),
                                         ["optimizer state cannot be restored", "exp_avg"]),
    "optimizer groups missing": (lambda p: p["optimizer"].pop("param_groups"),
                                 ["optimizer state cannot be restored"]),
    "scheduler state garbage": (set_to("scheduler", {"T_max": "x", "base_lrs": 3}),
                                ["scheduler"]),
    "rng state garbage": (set_to("rng", {"python": 3}), ["rng state cannot be restored"]),
    "width 10**6": (lambda p: p["config"].__setitem__("width", 10**6), ["width=1000000"]),
    "a 5,000-character model name": (lambda p: p["config"].__setitem__("model", "m" * 5000),
                                     ["trained with model='mmm", "..."]),
}


@pytest.mark.parametrize("case", list(HAND_MADE), ids=list(HAND_MADE))
def test_hand_made_checkpoint_is_one_line(case, adamw_checkpoint, tmp_path, capsys):
    change, words = HAND_MADE[case]
    payload = torch.load(adamw_checkpoint, weights_only=True)
    change(payload)
    path = tmp_path / "hand.pth"
    torch.save(payload, path)
    out = tmp_path / "o"
    assert main(["train", *TINY, "-e", "2", "--optimizer", "adamw", "--scheduler", "cosine",
                 "-f", str(path), "--out-dir", str(out)]) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word in err, err
    assert main(["predict", "-m", str(path), "-i", str(a_png(tmp_path)), "-n"]) in (0, 2)
    capsys.readouterr()  # predict reads fewer fields; it must only never raise


# ---- image files: decompression bombs and symlink loops (item 7) --------------------------------
def png_claiming(width: int, height: int) -> bytes:
    """A small, valid PNG whose header says width x height (PIL refuses it before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64, 9)) + chunk(b"IEND", b""))


def test_decompression_bombs_and_symlink_loops_are_listed_with_every_other_fault(tmp_path,
                                                                                  capsys):
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 400
    for sub in ("imgs", "masks"):
        (tmp_path / sub).mkdir()
    good = np.zeros((16, 16), np.uint8)
    good[4:8, 4:8] = 255
    for name in ("a", "b"):
        Image.fromarray(np.stack([good] * 3, -1)).save(tmp_path / "imgs" / f"{name}.png")
        Image.fromarray(good).save(tmp_path / "masks" / f"{name}_mask.png")
    (tmp_path / "imgs" / "bomb.png").write_bytes(bomb)
    Image.fromarray(good).save(tmp_path / "masks" / "bomb_mask.png")
    (tmp_path / "masks" / "b_mask.png").write_bytes(bomb)  # a bomb as a mask
    os.symlink("loop.png", tmp_path / "imgs" / "loop.png")  # points at itself
    os.symlink("gone.png", tmp_path / "masks" / "dangling_mask.png")
    out = tmp_path / "out"
    assert main(["train", "--data-dir", str(tmp_path), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: 4 problem(s)"), err
    assert "imgs/bomb.png: unreadable image (DecompressionBombError" in err
    assert "masks/b_mask.png: unreadable image (DecompressionBombError" in err
    assert "imgs/loop.png: broken symbolic link" in err
    assert "masks/dangling_mask.png: broken symbolic link" in err
    assert not out.exists()


@pytest.mark.parametrize("flags, words", [
    (["-s", "inf"], "--scale = inf"), (["-s", "nan"], "--scale = nan"), (["-s", "-1"], "--scale"),
    (["-t", "nan"], "--mask-threshold = nan"), (["-t", "2"], "--mask-threshold = 2.0"),
    (["--device", "cudaXYZ"], "'cudaXYZ'"),
])
def test_bad_predict_flags_are_one_line(adamw_checkpoint, tmp_path, capsys, flags, words):
    out = tmp_path / "o.png"
    assert main(["predict", "-m", str(adamw_checkpoint), "-i", str(a_png(tmp_path)), "-o",
                 str(out), *flags]) == 2
    assert words in one_error_line(capsys)
    assert not out.exists()


def test_predict_on_a_decompression_bomb_is_one_line(adamw_checkpoint, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(30000, 30000))
    assert main(["predict", "-m", str(adamw_checkpoint), "-i", str(bomb)]) == 2
    err = one_error_line(capsys)
    assert "bomb.png: cannot read image (DecompressionBombError" in err
    assert not (tmp_path / "bomb_OUT.png").exists()


# ---- a real out-of-memory on CPU is infeasible (item 5) ----------------------------------------
def test_a_real_cpu_allocation_failure_counts_as_out_of_memory():
    from sweep.trainable import out_of_memory

    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)  # refused by the allocator at once: nothing used
    error = caught.value
    # Not the class the old check caught: the plain RuntimeError of torch's CPU allocator.
    assert not isinstance(error, torch.OutOfMemoryError)
    assert out_of_memory(error), str(error)
    assert out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert out_of_memory(MemoryError())
    assert out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling "
                                      "cublasCreate(handle)"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not out_of_memory(ValueError("can't allocate memory"))  # only torch's own classes


OOM_TRIAL = textwrap.dedent("""
    import json, resource, sys, types
    from pathlib import Path
    from sweep import trainable
    from sweep.experiment import load_experiment
    from sweep.rundir import TrialStorage

    run_dir = Path(sys.argv[1])
    storage = TrialStorage(run_dir)  # the default trial storage: the run directory
    experiment = load_experiment("experiments/smoke.yaml", ["--train.width=64",
                                 "--train.synthetic_size=128", "--train.synthetic_images=8"])
    data = experiment.train.load_data()
    # A trial outside Ray: the trainable's own code, its Ray calls answered here.
    trainable.tune = types.SimpleNamespace(
        get_context=lambda: types.SimpleNamespace(get_trial_id=lambda: "t_oom",
                                                  get_trial_name=lambda: "trial_0000"),
        get_checkpoint=lambda: None)
    # Room for what is loaded and 400 MB more; one batch of 8 at width 64 needs several GB.
    size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + 400 * 2**20, resource.RLIM_INFINITY))
    trainable.train_trial({"lr": 1e-3, "batch_size": 8, "seed": 0}, data=data,
                          experiment=experiment, storage=storage)
    print(json.dumps(json.loads((run_dir / "infeasible" / "t_oom.json").read_text())))
""")


def test_a_trial_that_really_runs_out_of_cpu_memory_is_recorded_infeasible(tmp_path):
    """The trainable under an address-space limit: torch's CPU allocator fails for real (a plain
    RuntimeError), and the trial records itself infeasible instead of raising (and being
    retried, then counted failed)."""
    done = subprocess.run([sys.executable, "-c", OOM_TRIAL, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reason = json.loads(done.stdout.strip().splitlines()[-1])["reason"]
    assert reason.startswith("out of memory: ") and "allocate" in reason, reason


# ---- places a command cannot write into (issue 24 item 10) --------------------------------------
@contextlib.contextmanager
def made_read_only(folder: Path):
    """``folder`` as one this process cannot write into: mode 555, and for root (whom modes do
    not stop) a read-only bind mount of it as well; the test is skipped where root may not
    mount."""
    folder.chmod(0o555)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True
    ).returncode == 0
    try:
        if os.geteuid() == 0 and not mounted:
            pytest.skip("running as root without a read-only mount: no folder it cannot write")
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    with made_read_only(folder):
        yield folder


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


# name -> (command line with PLACE for the unwritable path, the place: "file" or "read-only")
UNWRITABLE = {
    "run: --runs-dir a file": (["run", str(SMOKE), "--runs-dir", "PLACE"], "file"),
    "run: --runs-dir read-only": (["run", str(SMOKE), "--runs-dir", "PLACE"], "read-only"),
    "run: storage a file": (["run", str(SMOKE), "--storage=PLACE"], "file"),
    "run: storage read-only": (["run", str(SMOKE), "--storage=PLACE"], "read-only"),
    "run: cache_dir a file": (["run", str(SMOKE), "--train.cache_dir=PLACE"], "file"),
    "run: cache_dir read-only": (["run", str(SMOKE), "--train.cache_dir=PLACE"], "read-only"),
    "train: --out-dir a file": (["train", *TINY, "--out-dir", "PLACE"], "file"),
    "train: --out-dir read-only": (["train", *TINY, "--out-dir", "PLACE"], "read-only"),
    "train: --cache-dir a file": (["train", *TINY, "--cache-dir", "PLACE"], "file"),
    "train: --cache-dir read-only": (["train", *TINY, "--cache-dir", "PLACE"], "read-only"),
}


@pytest.mark.parametrize("case", list(UNWRITABLE), ids=list(UNWRITABLE))
def test_an_unwritable_place_is_one_line_before_anything_starts(case, tmp_path, capsys,
                                                                request):
    argv, kind = UNWRITABLE[case]
    place = request.getfixturevalue("a_file" if kind == "file" else "read_only")
    before = place.read_bytes() if kind == "file" else sorted(place.iterdir())
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = [a.replace("PLACE", str(place)) for a in argv]
    if argv[0] == "run" and "--runs-dir" not in argv:
        argv += ["--runs-dir", str(runs)]
    if argv[0] == "train" and "--out-dir" not in argv:
        argv += ["--out-dir", str(out)]
    assert main(argv) == 2
    err = one_error_line(capsys)
    assert str(place) in err, err
    assert ("not a directory" if kind == "file" else "not writable") in err, err
    assert not runs.exists() and not out.exists()  # refused before Ray or the data started
    assert (place.read_bytes() if kind == "file" else sorted(place.iterdir())) == before


def test_a_read_only_cache_holding_the_data_set_is_read_as_it_is(tmp_path):
    config = TrainConfig.from_dict({"synthetic_images": 8, "synthetic_size": 32,
                                    "cache_dir": str(tmp_path / "cache")})
    config.load_data()  # decoded into the cache once
    with made_read_only(tmp_path / "cache"):
        config.check_cache_dir()  # a shared, read-only cache: only read
        assert len(config.load_data()) == 8
        with pytest.raises(ConfigError, match="cache_dir .* is not writable"):
            config.replace(synthetic_seed=1).check_cache_dir()  # would be decoded there


# ---- images smaller than the model takes (issue 24 item 11) -------------------------------------
def tiny_folder(root: Path, side: int) -> Path:
    """A folder data set of four side x side images; two masks are all crack, two none."""
    for sub in ("imgs", "masks"):
        (root / sub).mkdir(parents=True)
    for name, value in (("a", 255), ("b", 0), ("c", 255), ("d", 0)):
        Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(root / "imgs" / f"{name}.png")
        Image.fromarray(np.full((side, side), value, np.uint8)).save(
            root / "masks" / f"{name}_mask.png")
    return root


@pytest.mark.parametrize("flags, words", [
    (["--data-dir", "FOLDER8"], ["4 image(s)", "8x8", "unet", "16 px"]),
    (["--data-dir", "FOLDER1"], ["1x1", "unet", "16 px"]),
    (["--model", "segnet", "--synthetic-size", "16"], ["16x16", "segnet", "32 px"]),
    (["--crop", "8"], ["crop = 8", "unet", "16"]),
], ids=["8 px folder", "1 px folder", "segnet at 16 px", "crop 8"])
def test_training_on_images_below_the_model_s_minimum_is_one_line(tmp_path, capsys, flags,
                                                                  words):
    folders = {f"FOLDER{side}": str(tiny_folder(tmp_path / f"data{side}", side))
               for side in (1, 8)}
    out = tmp_path / "out"
    argv = ["train", *TINY, "-e", "1", *[folders.get(f, f) for f in flags],
            "--out-dir", str(out)]
    assert main(argv) == 2
    err = one_error_line(capsys)
    for word in words:
        assert word in err, err
    assert not out.exists()


@pytest.mark.parametrize("side, scale, words", [
    (1, "1", ["1x1", "unet", "16 px"]), (8, "1", ["8x8", "16 px"]),
    (32, "0.25", ["8x8", "scale 0.25", "16 px"]),
], ids=["1 px", "8 px", "32 px at scale 0.25"])
def test_predicting_on_an_image_below_the_model_s_minimum_is_one_line(
        adamw_checkpoint, tmp_path, capsys, side, scale, words):
    image = tmp_path / "small.png"
    Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(image)
    assert main(["predict", "-m", str(adamw_checkpoint), "-i", str(image), "-s", scale]) == 2
    err = one_error_line(capsys)
    assert str(image) in err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "small_OUT.png").exists()
