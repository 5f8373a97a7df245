"""The decoded disk cache: built once and reused, keyed by content and settings, never read
when incomplete or corrupt; crops for folders mixing sizes, with whole-image validation."""
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from data_pipeline import DataFolderError, load_data
from data_pipeline import cache as cache_module
from data_pipeline.cache import CacheRef, cache_root
from tests.helpers import results_only, tiny_config
from training.loop import make_loaders, train
from training.settings import ConfigError


def write_pair(folder, name, width, height, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: height // 2, width // 3: width // 2] = 255
    Image.fromarray(image).save(folder / "imgs" / f"{name}.png")
    Image.fromarray(mask).save(folder / "masks" / f"{name}_mask.png")


def make_folder(root, sizes):
    (root / "imgs").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (width, height) in enumerate(sizes):
        write_pair(root, f"img{i:02d}", width, height, seed=i)
    return root


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


@pytest.fixture
def decodes(monkeypatch):
    """Counts folder decodes (one per image pair) and can fail at a chosen one."""
    calls, fail_at = [], []
    original = cache_module.decode_pair

    def counting(*args):
        calls.append(args[0].name)
        if fail_at and len(calls) == fail_at[0]:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of the build
        return original(*args)

    monkeypatch.setattr(cache_module, "decode_pair", counting)
    return calls, fail_at


def entries(cache_dir):
    return sorted(p.name for p in cache_root(cache_dir).iterdir() if not p.name.endswith(".lock"))


def test_built_once_then_mapped(tmp_path, cache_dir, decodes):
    folder = make_folder(tmp_path / "data", [(20, 16)] * 4)
    first = load_data(str(folder), cache_dir=cache_dir)
    assert len(decodes[0]) == 4
    second = load_data(str(folder), cache_dir=cache_dir)
    assert len(decodes[0]) == 4  # nothing decoded again
    assert second.source["cache"] == first.source["cache"] and len(entries(cache_dir)) == 1
    assert second.fingerprint() == first.fingerprint()
    assert np.array_equal(second.images, first.images) and second.images.shape == (4, 16, 20, 3)
    assert not second.images.flags.writeable  # read-only mapping: nothing may mutate it


def test_changed_file_changes_key_and_fingerprint(tmp_path, cache_dir, decodes):
    folder = make_folder(tmp_path / "data", [(20, 16)] * 3)
    before = load_data(str(folder), cache_dir=cache_dir)
    path = folder / "imgs" / "img01.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    touched = load_data(str(folder), cache_dir=cache_dir)
    assert touched.source["cache"] != before.source["cache"]  # stats changed: a new cache
    assert touched.fingerprint() == before.fingerprint()  # but the same content
    write_pair(folder, "img01", 20, 16, seed=99)
    changed = load_data(str(folder), cache_dir=cache_dir)
    assert changed.fingerprint() != before.fingerprint()
    assert len(decodes[0]) == 9 and not np.array_equal(changed.images[1], before.images[1])


def test_interrupted_build_leaves_nothing_usable(tmp_path, cache_dir, decodes):
    folder = make_folder(tmp_path / "data", [(20, 16)] * 4)
    decodes[1].append(3)
    with pytest.raises(KeyboardInterrupt):
        load_data(str(folder), cache_dir=cache_dir)
    assert entries(cache_dir) == []  # no cache, no partial folder
    decodes[1].clear()
    data = load_data(str(folder), cache_dir=cache_dir)
    assert len(decodes[0]) == 3 + 4 and len(data) == 4


@pytest.mark.parametrize("damage", ["truncate", "header", "manifest"])
def test_corrupt_cache_is_rebuilt_not_read(tmp_path, cache_dir, decodes, damage):
    folder = make_folder(tmp_path / "data", [(20, 16)] * 3)
    good = load_data(str(folder), cache_dir=cache_dir)
    expected = np.array(good.images)
    cache_path = good.source["cache"]
    del good
    target = os.path.join(cache_path, "images.npy" if damage != "header" else "masks.npy")
    if damage == "truncate":
        os.truncate(target, os.path.getsize(target) - 100)
    elif damage == "header":
        with open(target, "r+b") as handle:
            handle.write(b"NOTNPY")
    else:
        os.remove(os.path.join(cache_path, "manifest.json"))  # e.g. a half-copied folder
    rebuilt = load_data(str(folder), cache_dir=cache_dir)
    assert len(decodes[0]) == 6  # decoded again
    assert np.array_equal(rebuilt.images, expected) and entries(cache_dir) == [
        os.path.basename(cache_path)]


def test_object_store_carries_a_reference_and_another_node_rebuilds(tmp_path, cache_dir):
    data = load_data(synthetic_images=6, synthetic_size=32, cache_dir=cache_dir)
    payload = pickle.dumps(data)
    assert len(payload) < 2000  # path, fingerprint and settings; no pixels
    assert np.array_equal(pickle.loads(payload).masks, data.masks)
    # A node without the driver's cache path builds its own, checked by fingerprint.
    other = CacheRef(str(tmp_path / "elsewhere" / "missing"), data.cache.fingerprint,
                     data.cache.spec, str(tmp_path / "node2"))
    copy = other.open()
    assert copy.fingerprint() == data.fingerprint() and np.array_equal(copy.images, data.images)
    assert copy.source["cache"].startswith(str(tmp_path / "node2"))
    wrong = CacheRef(other.path, "0" * 16, data.cache.spec, str(tmp_path / "node3"))
    with pytest.raises(DataFolderError, match="this node's copy of the data differs"):
        wrong.open()


def test_a_relative_cache_dir_means_the_drivers_folder_in_every_trial(tmp_path, monkeypatch):
    """Seen in the memory benchmark: with a relative cache_dir every trial, running in Ray
    Tune's own working directory, found no cache there and decoded a 4 GB copy of its own."""
    driver, trial = tmp_path / "driver", tmp_path / "trial"
    driver.mkdir(), trial.mkdir()
    monkeypatch.chdir(driver)
    data = load_data(synthetic_images=4, synthetic_size=32, cache_dir="relative_cache")
    assert data.source["cache"].startswith(str(driver / "relative_cache"))
    payload = pickle.dumps(data)
    monkeypatch.chdir(trial)  # as a trial: another working directory
    arrived = pickle.loads(payload)
    assert arrived.source["cache"] == data.source["cache"]
    assert list(trial.iterdir()) == []  # nothing decoded here
    assert np.array_equal(arrived.images, data.images)


def test_cache_location_setting_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CRACK_SWEEP_CACHE", str(tmp_path / "from_env"))
    assert cache_root("") == tmp_path / "from_env"
    assert cache_root(str(tmp_path / "setting")) == tmp_path / "setting"
    data = load_data(synthetic_images=4, synthetic_size=32)
    assert data.source["cache"].startswith(str(tmp_path / "from_env"))


def test_disk_full_names_folder_and_space_needed(tmp_path, cache_dir, monkeypatch):
    folder = make_folder(tmp_path / "data", [(20, 16)] * 2)
    monkeypatch.setattr(cache_module.shutil, "disk_usage",
                        lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(DataFolderError) as caught:
        load_data(str(folder), cache_dir=cache_dir)
    message = str(caught.value)
    assert str(folder) in message and "GB free in the cache folder" in message
    assert "set cache_dir" in message and not [e for e in entries(cache_dir) if "." not in e]


# ---- mixed sizes and crops ------------------------------------------------------------------
MIXED = [(40, 32), (36, 28), (40, 32), (44, 36), (36, 28), (40, 32), (44, 36), (40, 32),
         (36, 28), (40, 32)]


def test_mixed_sizes_without_crop_is_one_line_naming_sizes(tmp_path, cache_dir):
    folder = make_folder(tmp_path / "data", MIXED)
    with pytest.raises(DataFolderError) as caught:
        load_data(str(folder), cache_dir=cache_dir, crop=0)
    (fault,) = caught.value.faults
    assert "3 sizes (36x28 (3 images), 40x32 (5 images), 44x36 (2 images))" in fault
    assert "set crop" in fault and "--crop 28" in fault
    data = load_data(str(folder), cache_dir=cache_dir, crop=24)  # now it loads
    assert data.describe_sizes() == "3 sizes: 36x28 (3), 40x32 (5), 44x36 (2)"
    with pytest.raises(DataFolderError, match="3 sizes"):  # and the cached set says it too
        load_data(str(folder), cache_dir=cache_dir, crop=0)
    with pytest.raises(ConfigError, match="set crop"):  # the loop checks data it is handed
        train(tiny_config(tmp_path / "run", data_dir=str(folder)), data)


def test_images_smaller_than_crop_are_refused(tmp_path, cache_dir):
    folder = make_folder(tmp_path / "data", MIXED)
    with pytest.raises(DataFolderError) as caught:
        load_data(str(folder), cache_dir=cache_dir, crop=30)
    (fault,) = caught.value.faults
    assert fault.startswith("3 image(s) smaller than crop 30 after scaling (img01.png 36x28")
    assert "refused, not padded" in fault


def mixed_config(tmp_path, folder, cache_dir, **changes):
    values = dict(data_dir=str(folder), cache_dir=cache_dir, crop=24, batch_size=2,
                  eval_batch_size=2)
    return tiny_config(tmp_path, **{**values, **changes})


def test_crops_do_not_depend_on_num_workers(tmp_path, cache_dir):
    folder = make_folder(tmp_path / "data", MIXED)
    config = mixed_config(tmp_path / "a", folder, cache_dir, num_workers=0)
    data = config.load_data()
    serial = train(config, data)
    parallel = train(mixed_config(tmp_path / "b", folder, cache_dir, num_workers=2), data)
    assert results_only(serial.history) == results_only(parallel.history)
    other = train(mixed_config(tmp_path / "c", folder, cache_dir, seed=1), data)
    assert results_only(other.history) != results_only(serial.history)


def test_validation_scores_whole_images_whatever_the_crop(tmp_path, cache_dir):
    folder = make_folder(tmp_path / "data", MIXED)
    data = load_data(str(folder), cache_dir=cache_dir)

    def batches(**changes):
        config = mixed_config(tmp_path, folder, cache_dir, **changes)
        train_loader, val_loader = make_loaders(config, data, np.arange(7), np.arange(7, 10),
                                                pin=False)
        train_loader.sampler.set_epoch(1)
        return list(train_loader), list(val_loader)

    train_a, val_a = batches(seed=0)
    train_b, val_b = batches(seed=1, crop=16)
    assert {tuple(images.shape[2:]) for images, _ in train_a} == {(24, 24)}
    assert {tuple(images.shape[2:]) for images, _ in train_b} == {(16, 16)}
    # Validation: the same whole images, batched by size, whatever the crop and seed.
    assert [tuple(images.shape[2:]) for images, _ in val_a] == [(32, 40), (28, 36)]
    for (images_a, masks_a), (images_b, masks_b) in zip(val_a, val_b, strict=True):
        assert np.array_equal(images_a, images_b) and np.array_equal(masks_a, masks_b)
