"""Every registered model: forward and backward at odd sizes; UNet matches Pytorch-UNet."""
import pytest
import torch

from models import create_model, list_models, min_input_side


def test_registry_lists_both_models():
    assert {"unet", "segnet"} <= set(list_models())


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="unknown model 'unet3d'.*segnet.*unet"):
        create_model("unet3d")


def test_full_width_unet_has_pytorch_unet_parameter_count():
    # Checkpoint compatibility with Pytorch-UNet depends on this exact architecture.
    model = create_model("unet", n_channels=3, n_classes=2, width=64)
    assert sum(p.numel() for p in model.parameters()) == 31_037_698


def test_unet_state_dict_uses_pytorch_unet_names():
    keys = set(create_model("unet", width=4).state_dict())
    for key in ["inc.double_conv.0.weight", "down1.maxpool_conv.1.double_conv.0.weight",
                "down4.maxpool_conv.1.double_conv.4.running_mean", "up1.up.weight",
                "up4.conv.double_conv.3.weight", "outc.conv.weight", "outc.conv.bias"]:
        assert key in keys


def test_bilinear_unet_has_no_transposed_convolutions():
    keys = set(create_model("unet", width=4, bilinear=True).state_dict())
    assert not any(k.startswith("up1.up.") for k in keys)


def test_create_model_keeps_defaults_for_none():
    model = create_model("unet", width=None, n_classes=3)
    assert model.inc.double_conv[0].out_channels == 64 and model.n_classes == 3


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(32, 32), (37, 45), (50, 33)])
def test_forward_backward_at_odd_sizes(name, size):
    torch.manual_seed(0)
    model = create_model(name, n_channels=3, n_classes=2, width=4)
    x = torch.randn(2, 3, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 2, *size)
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_single_channel_input_and_binary_output(name):
    model = create_model(name, n_channels=1, n_classes=1, width=4)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("name", list_models())
def test_min_input_side_is_the_smallest_side_the_model_takes(name):
    """train and predict refuse smaller images in one line by this number (issue 24 item 11)."""
    side = min_input_side(name)
    model = create_model(name, n_channels=3, n_classes=2, width=4).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, side, side + 3)).shape[-2:] == (side, side + 3)
        with pytest.raises(RuntimeError, match="too small"):
            model(torch.zeros(1, 3, side + 3, side - 1))
