"""Synthetic and folder data sets, the fixed split, and seeded loading."""
import numpy as np
import pytest
import torch
from PIL import Image

from data_pipeline import DataFolderError, load_data, split_indices
from data_pipeline.loader import EpochSampler, SegmentationDataset, make_loader
from data_pipeline.synthetic import make_synthetic


def test_synthetic_is_a_function_of_seed_and_index():
    images_a, masks_a = make_synthetic(6, 48, seed=3)
    images_b, masks_b = make_synthetic(3, 48, seed=3)
    assert np.array_equal(images_a[:3], images_b) and np.array_equal(masks_a[:3], masks_b)
    other, _ = make_synthetic(3, 48, seed=4)
    assert not np.array_equal(images_b, other)


def test_synthetic_cracks_are_a_few_percent_of_pixels():
    data = load_data(synthetic_images=40, synthetic_size=96)
    share = data.masks.mean()
    assert 0.005 < share < 0.08
    assert data.images.dtype == np.uint8 and data.images.shape == (40, 96, 96, 3)
    assert data.mask_values == [0, 255] and set(np.unique(data.masks)) == {0, 1}


def test_split_depends_on_split_seed_only():
    train_a, val_a = split_indices(50, 20, split_seed=1)
    train_b, val_b = split_indices(50, 20, split_seed=1)
    assert np.array_equal(val_a, val_b) and len(val_a) == 10
    assert set(train_a) | set(val_a) == set(range(50)) and not set(train_a) & set(val_a)
    assert not np.array_equal(val_a, split_indices(50, 20, split_seed=2)[1])


def test_shuffle_order_is_a_function_of_seed_and_epoch():
    def order(seed, epoch):
        sampler = EpochSampler(30, seed, shuffle=True)
        sampler.set_epoch(epoch)
        return [position for _, position in sampler]

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)


def batches(num_workers):
    data = load_data(synthetic_images=12, synthetic_size=32)
    dataset = SegmentationDataset(data.images, data.masks, np.arange(12), seed=5, augment=True)
    loader = make_loader(dataset, batch_size=4, seed=5, shuffle=True, num_workers=num_workers)
    loader.sampler.set_epoch(2)
    return [(images.clone(), masks.clone()) for images, masks in loader]


def test_augmented_batches_do_not_depend_on_num_workers():
    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 3
    for (images_a, masks_a), (images_b, masks_b) in zip(single, multi):
        assert torch.equal(images_a, images_b) and torch.equal(masks_a, masks_b)
    assert single[0][0].dtype == torch.uint8 and single[0][1].dtype == torch.int64


def write_pair(folder, name, size=(20, 16), mask_name=None, mask_value=255, ext=".png"):
    image = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[2:6, 3:9] = mask_value
    Image.fromarray(image).save(folder / "imgs" / f"{name}{ext}")
    Image.fromarray(mask).save(folder / "masks" / f"{mask_name or name + '_mask'}.png")


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    return tmp_path


def test_folder_in_pytorch_unet_layout(folder):
    write_pair(folder, "a")
    write_pair(folder, "b", mask_name="b", ext=".jpg")  # mask without suffix, jpg image
    data = load_data(str(folder))
    assert data.ids == ["a", "b"] and data.images.shape == (2, 16, 20, 3)
    assert data.mask_values == [0, 255]
    assert data.masks[0, 3, 4] == 1 and data.masks[0, 0, 0] == 0
    half = load_data(str(folder), scale=0.5)
    assert half.images.shape == (2, 8, 10, 3) and set(np.unique(half.masks)) <= {0, 1}


def test_every_fault_is_reported_at_once(folder):
    write_pair(folder, "good")
    write_pair(folder, "lonely_image")
    (folder / "masks" / "lonely_image_mask.png").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "masks" / "orphan_mask.png")
    (folder / "imgs" / "broken.png").write_bytes(b"not a png at all")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "masks" / "broken_mask.png")
    write_pair(folder, "mismatch")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "masks" / "mismatch_mask.png")
    with pytest.raises(DataFolderError) as caught:
        load_data(str(folder))
    faults = "\n".join(caught.value.faults)
    assert "lonely_image.png: image without mask" in faults
    assert "orphan_mask.png: mask without image" in faults
    assert "broken.png: unreadable image" in faults
    assert "mismatch.png: image is 20x16 but its mask mismatch_mask.png is 5x5" in faults
    assert len(caught.value.faults) == 4


def test_empty_folder_and_too_many_mask_values(folder):
    with pytest.raises(DataFolderError, match="no image files"):
        load_data(str(folder))
    write_pair(folder, "a", mask_value=128)
    write_pair(folder, "b", mask_value=255)
    with pytest.raises(DataFolderError, match=r"3 distinct values \[0, 128, 255\] but classes=2"):
        load_data(str(folder), n_classes=2)
    assert load_data(str(folder), n_classes=3).mask_values == [0, 128, 255]


def test_missing_subfolders(tmp_path):
    with pytest.raises(DataFolderError, match="imgs: folder missing"):
        load_data(str(tmp_path))


def test_fingerprint_follows_content():
    a, b = load_data(synthetic_images=4, synthetic_size=32), load_data(synthetic_images=4,
                                                                         synthetic_size=32)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != load_data(synthetic_images=4, synthetic_size=32,
                                        synthetic_seed=1).fingerprint()


def test_mixed_and_single_valued_masks_are_faults(folder):
    write_pair(folder, "a")
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(folder / "imgs" / "b.png")
    Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(folder / "masks" / "b_mask.png")
    with pytest.raises(DataFolderError, match=r"masks mix grey \(a_mask.png\) and colour"):
        load_data(str(folder))
    (folder / "masks" / "b_mask.png").unlink()
    (folder / "imgs" / "b.png").unlink()
    write_pair(folder, "a", mask_value=0)
    with pytest.raises(DataFolderError, match=r"single value \[0\]: nothing to segment"):
        load_data(str(folder))
