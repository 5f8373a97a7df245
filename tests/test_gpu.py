"""CUDA paths: AMP training, determinism, and naming the ops without deterministic kernels.
Marked gpu: `make test` skips them; `make test-all` runs them where a GPU exists."""
import pytest

from data_pipeline import load_data
from tests.helpers import results_only, tiny_config
from training.loop import train

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def data():
    return load_data(synthetic_images=24, synthetic_size=64)


def test_amp_training_on_cuda_reports_gpu_memory(gpu, tmp_path, data):
    result = train(tiny_config(tmp_path, device="cuda", amp=True, channels_last=True,
                               synthetic_size=64), data)
    assert result.history[-1]["gpu_peak_mem_mb"] > 0
    assert 0 <= result.history[-1]["val_dice"] <= 1


def test_cuda_unet_is_deterministic(gpu, tmp_path, data):
    first = train(tiny_config(tmp_path / "a", device="cuda"), data)
    second = train(tiny_config(tmp_path / "b", device="cuda"), data)
    assert results_only(first.history) == results_only(second.history)
    assert first.nondeterministic_ops == []


def test_cuda_num_workers_do_not_change_results(gpu, tmp_path, data):
    serial = train(tiny_config(tmp_path / "a", device="cuda", num_workers=0), data)
    parallel = train(tiny_config(tmp_path / "b", device="cuda", num_workers=2), data)
    assert results_only(serial.history) == results_only(parallel.history)


def test_segnet_names_maxunpool_on_cuda(gpu, tmp_path, data):
    result = train(tiny_config(tmp_path, device="cuda", model="segnet", epochs=1), data)
    assert any("MaxUnpool2d" in op for op in result.nondeterministic_ops)



@pytest.mark.parametrize("name, bilinear", [("segnet", False), ("unet", True), ("unet", False)])
def test_named_ops_are_the_ones_torch_flags(gpu, name, bilinear):
    """The ops we name are exactly those torch's deterministic mode flags in a training step."""
    import warnings

    import torch

    from models import create_model
    from training.determinism import configure_determinism, nondeterministic_ops
    from training.losses import segmentation_loss

    configure_determinism(gpu, True)
    model = create_model(name, width=4, bilinear=bilinear).to(gpu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logits = model(torch.randn(2, 3, 32, 32, device=gpu))
        segmentation_loss(logits, torch.zeros(2, 32, 32, dtype=torch.long, device=gpu)).backward()
    flagged = {str(w.message).split(" does not have")[0] for w in caught
               if "does not have a deterministic implementation" in str(w.message)}
    named = nondeterministic_ops(name, bilinear, gpu)
    assert len(flagged) == len(named), (flagged, named)
    for op in flagged:  # e.g. max_unpooling2d_forward_out -> "max_unpooling2d" in our name
        stem = "_".join(op.split("_")[:2])
        assert any(stem in entry for entry in named), (op, named)
