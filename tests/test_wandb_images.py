"""Validation panels rendered inside trials: image | true mask | predicted mask per row."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_pipeline import load_data, split_indices
from models import create_model
from sweep.wandb_mirror.val_images import GAP, render_epochs, render_val_panel


def test_panel_shows_image_true_and_predicted_masks(tmp_path):
    data = load_data(synthetic_images=10, synthetic_size=32)
    _, val = split_indices(len(data), 30, 0)
    model = create_model("unet", n_channels=data.channels, n_classes=2, width=4).train()
    path = render_val_panel(model, data, val, 2, tmp_path / "val" / "epoch_001.png")

    panel = np.asarray(Image.open(path))
    size = data.images.shape[1]
    assert panel.shape == (2 * size + GAP, 3 * size + 2 * GAP, 3)
    second = panel[size + GAP:, :size]
    np.testing.assert_array_equal(second, np.repeat(data.images[val[1]], 3, -1)
                                  if data.channels == 1 else data.images[val[1]])
    true_mask = panel[:size, size + GAP:2 * size + GAP, 0]
    np.testing.assert_array_equal(true_mask, data.masks[val[0]] * 255)
    predicted = panel[:size, 2 * (size + GAP):, 0]
    assert set(np.unique(predicted)) <= {0, 255}
    assert model.training  # the trial's train mode is left as it was


def test_render_epochs_resolve_last():
    assert render_epochs([1, -1], 5) == {1, 5}
    assert render_epochs([2, 9], 5) == {2}  # past the trial's epochs: never rendered


@pytest.mark.gpu
def test_panel_from_a_model_on_the_gpu(tmp_path, gpu):
    import torch

    data = load_data(synthetic_images=10, synthetic_size=32)
    model = create_model("unet", n_channels=data.channels, n_classes=2, width=4)
    model = model.to(gpu, memory_format=torch.channels_last)
    path = render_val_panel(model, data, [0, 1], 2, tmp_path / "panel.png")
    assert np.asarray(Image.open(path)).shape == (2 * 32 + GAP, 3 * 32 + 2 * GAP, 3)


def test_a_trial_imports_no_driver_code():
    """A trial worker imports sweep.trainable: it must not pull in the driver's mirror (the
    callback, its channel and writer process, the integration, the uploader)."""
    driver = [f"sweep.wandb_mirror.{name}"
              for name in ("callback", "channel", "writer", "integration", "sync")]
    code = ("import json, sys, sweep.trainable; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sweep.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "sweep.wandb_mirror.val_images" in loaded  # the trial's own part of the mirror
    assert [name for name in driver if name in loaded] == []
