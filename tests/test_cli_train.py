"""`train`, `predict` and `samples` from the command line, as a Pytorch-UNet user runs them."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sweep.__main__ import main

TINY = ["--width", "4", "--synthetic-images", "16", "--synthetic-size", "32", "-e", "1",
        "-b", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert main(["train", *TINY, "--out-dir", str(out)]) == 0
    return out


def test_train_writes_metrics_and_checkpoint(trained):
    assert (trained / "metrics.jsonl").read_text().count("\n") == 1
    assert (trained / "checkpoints" / "checkpoint_epoch1.pth").is_file()


def test_config_file_then_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("width: 4\nsynthetic_images: 16\nsynthetic_size: 32\nepochs: 3\n")
    assert main(["train", "--config", str(config), "-e", "1", "--out-dir",
                 str(tmp_path / "o")]) == 0
    saved = torch.load(tmp_path / "o" / "checkpoints" / "checkpoint_epoch1.pth",
                       weights_only=True)["config"]
    assert saved["epochs"] == 1 and saved["synthetic_size"] == 32


def test_unknown_config_key_is_one_line_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("widht: 4\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown key widht" in err and str(config) in err
    assert len(err.splitlines()) == 1


def test_bad_data_folder_exits_2_without_traceback(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "imgs" / "x.png").write_bytes(b"junk")
    done = subprocess.run([sys.executable, "-m", "sweep", "train", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "x.png: unreadable image" in done.stderr and "x.png: image without mask" in done.stderr


def test_predict_writes_mask_and_viz(trained, tmp_path):
    source = tmp_path / "crack.jpg"
    Image.fromarray(np.full((30, 41, 3), 128, np.uint8)).save(source)
    checkpoint = trained / "checkpoints" / "checkpoint_epoch1.pth"
    assert main(["predict", "-m", str(checkpoint), "-i", str(source), "--viz"]) == 0
    mask = np.asarray(Image.open(tmp_path / "crack_OUT.png"))
    assert mask.shape == (30, 41) and set(np.unique(mask)) <= {0, 255}
    viz = Image.open(tmp_path / "crack_viz.png")
    assert viz.size == (41 * 3 + 8, 30)  # image | mask | overlay


def test_predict_accepts_pytorch_unet_checkpoint(trained, tmp_path):
    weights = torch.load(trained / "checkpoints" / "checkpoint_epoch1.pth",
                         weights_only=True)["model"]
    weights["mask_values"] = [0, 1]
    torch.save(weights, tmp_path / "MODEL.pth")
    source = tmp_path / "in.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(source)
    out = tmp_path / "out.png"
    assert main(["predict", "-m", str(tmp_path / "MODEL.pth"), "-i", str(source),
                 "-o", str(out), "-s", "0.5"]) == 0
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 1}


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_predict_bad_checkpoint_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.pth"
    if content:
        path.write_bytes(content)
    assert main(["predict", "-m", str(path), "-i", "x.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_samples_writes_pngs(tmp_path):
    assert main(["samples", "--synthetic-size", "32", "-n", "3", "--out-dir", str(tmp_path)]) == 0
    names = {p.name for p in (tmp_path / "samples").iterdir()}
    assert "samples.png" in names and "synthetic_00000_mask.png" in names and len(names) == 7


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "seed = -1 should be 0 or more"),
    (["--synthetic-images", "1"], "synthetic_images = 1 should be at least 2"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--width", "0"],
     "no CUDA GPU" if not torch.cuda.is_available() else "width = 0"),
])
def test_bad_settings_are_one_line_exit_2(capsys, flags, message):
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_load_past_the_last_epoch_is_one_line(trained, tmp_path, capsys):
    checkpoint = trained / "checkpoints" / "checkpoint_epoch1.pth"
    assert main(["train", *TINY, "-f", str(checkpoint), "--out-dir", str(tmp_path)]) == 2
    assert "is at epoch 1: nothing left to train with epochs=1" in capsys.readouterr().err


def test_predict_three_class_weights_without_mask_values(tmp_path):
    from models import create_model

    torch.manual_seed(0)
    torch.save(create_model("unet", n_classes=3, width=4).state_dict(), tmp_path / "m.pth")
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(source)
    assert main(["predict", "-m", str(tmp_path / "m.pth"), "-i", str(source), "-o", str(out)]) == 0
    assert set(np.unique(np.asarray(Image.open(out)))) <= {0, 1, 2}
