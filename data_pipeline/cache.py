"""The decoded cache on disk. Every data set, a folder or the synthetic one, is decoded once per
content and decode settings into uint8 files that every run, trial and loader worker maps
read-only: the OS shares the pages, and a data set larger than RAM pages in and out.

Layout of ``<root>/<key>/``: ``images.npy`` and ``masks.npy`` hold every image's (mask's) pixels
flat, one after another (so sizes may differ); ``index.npy`` is (N, 5) int64: image offset,
height, width, channels, mask offset; ``manifest.json``, written last, holds the ids, file
names, mask values, fingerprint and a hash of index.npy.

- key: sha256 of the format version, the decode settings and, per file, its relative path,
  size and mtime_ns: stat calls only, so finding the cache never reads the data set, and a
  changed file (new size or mtime) gives a new key. ``classes`` and ``crop`` are not in it:
  they are checked against the manifest and need no new decode.
- fingerprint: the content's id (W&B records it, another node checks it): a hash of the
  files' bytes, read anyway when decoding, so a touched but unchanged file keeps it.
- build: into ``<key>.partial-<host>-<pid>/``, renamed to ``<key>/`` when complete; a lock file
  makes other processes of a node wait instead of building it twice. Ctrl-C, a crash or a full
  disk leave no ``<key>/``; space is reserved up front (fallocate), so a full disk fails at once.
- open: manifest, headers, lengths and index hash are checked; a cache that fails is moved
  aside and rebuilt, never read. Where a command loads the data set (the driver, once per run
  or resume) the pixel files are also checked against their sha256 in the manifest: a cache
  file edited in place is rebuilt rather than trained on (an out-of-range mask value from such
  an edit used to end in a traceback). A trial reads no pixel to open a cache, the driver's
  checked one or its node's own. A cache written before the checksums existed has none: it is
rebuilt once.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipeline import synthetic
from data_pipeline.data import SegmentationData
from data_pipeline.digests import file_sha256, files_sha256
from data_pipeline.folder import (
    DataFolderError,
    class_faults,
    decode_pair,
    pair_files,
    scan_folder,
    size_faults,
)
from data_pipeline.parallel import parallel_map

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when decoding changes what a cache holds
ENV_VAR = "CRACK_SWEEP_CACHE"
MANIFEST, INDEX, IMAGES, MASKS = "manifest.json", "index.npy", "images.npy", "masks.npy"


class CacheInvalid(Exception):
    """A cache folder that must not be read (incomplete, truncated, wrong header, old format)."""


@dataclass(frozen=True)
class CacheRef:
    """What a cache-backed data set pickles as: enough to map its cache, or on a node that
    lacks it, to build this node's own and check that it holds the same content."""
    path: str  # <cache root>/<key>, where the driver found it
    fingerprint: str  # the content's identity, checked wherever it is opened
    spec: dict  # the decode settings (data_spec), to rebuild where the path is missing
    cache_dir: str = ""  # the setting ('' = env var or default), resolved on each node

    def open(self) -> SegmentationData:
        return open_ref(self)


def cache_root(setting: str = "") -> Path:
    """The setting, else $CRACK_SWEEP_CACHE, else $XDG_CACHE_HOME (~/.cache)/crack-sweep/data."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    # Absolute here, on the driver: a trial runs in its own working directory (Ray Tune's), where
    # a relative path names another folder, and each trial would decode the data set again.
    return Path(setting or os.environ.get(ENV_VAR)
                or base / "crack-sweep" / "data").expanduser().absolute()


def data_spec(data_dir: str = "", scale: float = 1.0, mask_suffix: str = "auto",
              synthetic_images: int = 160, synthetic_size: int = 128,
              synthetic_seed: int = 0) -> dict:
    """The decode settings: what a cache holds is a function of these and the files."""
    if data_dir:
        return {"kind": "folder", "path": str(Path(data_dir).resolve()), "scale": scale,
                "mask_suffix": mask_suffix}
    return {"kind": "synthetic", "images": synthetic_images,
            "size": max(16, int(round(synthetic_size * scale))), "seed": synthetic_seed}


def load_cached(spec: dict, cache_dir: str = "", n_classes: int = 2, crop: int | None = None,
                expect: str | None = None, verify: bool = True) -> SegmentationData:
    """The data set ``spec`` names, from its cache (built first if missing or invalid). Faults
    of the folder, and of classes and crop against it, are raised all at once. ``verify``: hash
    an existing cache's pixel files (a command loading its data); a trial does not."""
    if cache_dir:  # what travels to trials (CacheRef.cache_dir) must not depend on their cwd
        cache_dir = str(Path(cache_dir).expanduser().absolute())
    root = cache_root(cache_dir)
    plan = folder_plan(spec) if spec["kind"] == "folder" else synthetic_plan(spec)
    if plan.key is None:  # the folder's files do not pair up: report every fault
        scan_folder(plan.source, spec["scale"], spec["mask_suffix"], n_classes, crop)
    data = open_or_none(root / plan.key, spec, cache_dir, verify)
    if data is None:
        with build_lock(root, plan.key):
            data = open_or_none(root / plan.key, spec, cache_dir, verify)  # built meanwhile?
            if data is None:
                plan.prepare(n_classes, crop)  # checks every file first
                write_cache(root, plan)
                data = open_cache(root / plan.key, spec, cache_dir)
    check_against(data, plan.source, n_classes, crop)
    if expect and data.fingerprint() != expect:
        raise DataFolderError(plan.source, [
            f"decoded here to fingerprint {data.fingerprint()}, but the run expects {expect}: "
            f"this node's copy of the data differs from the driver's"])
    return data


def is_decoded(spec: dict, cache_dir: str = "") -> bool:
    """Whether the cache already holds ``spec``'s data set: then loading only reads the cache
    folder, which may be a shared, read-only one."""
    try:
        plan = folder_plan(spec) if spec["kind"] == "folder" else synthetic_plan(spec)
    except DataFolderError:
        return False  # loading it lists the folder's faults
    return plan.key is not None and (cache_root(cache_dir) / plan.key / MANIFEST).is_file()


def open_ref(ref: CacheRef) -> SegmentationData:
    """A pickled data set arriving in a trial: map the driver's cache if this node sees it
    (shared storage, or the same machine), else find or build this node's own, same content."""
    with contextlib.suppress(CacheInvalid, OSError):
        data = open_cache(Path(ref.path), ref.spec, ref.cache_dir)
        if data.fingerprint() == ref.fingerprint:
            return data
    # A node without the driver's cache: its own, unhashed (every trial starting here would
    # read the whole cache again; the driver checked its copy once).
    return load_cached(ref.spec, ref.cache_dir, n_classes=1 << 30, expect=ref.fingerprint,
                       verify=False)


def check_against(data: SegmentationData, source, n_classes: int, crop: int | None) -> None:
    shapes = [tuple(image.shape) for image in data.images]
    faults = class_faults(Path(str(source)), data.mask_values, n_classes)
    faults += size_faults(shapes, data.ids, crop)
    if faults:
        raise DataFolderError(source, faults)


# ---- what to decode --------------------------------------------------------------------------

@dataclass
class Plan:
    """One data set to decode: its key, its items' shapes, and how to decode item i."""
    key: str | None
    source: object  # the folder (a Path), or a name for messages
    source_info: dict
    ids: list[str] | None = None
    names: list[str] | None = None  # file names for messages, in id order
    shapes: list[tuple] | None = None
    mask_values: list | None = None
    decode: Callable | None = None  # i -> (HWC image, HW classes, digest of the source bytes)
    fingerprint: str | None = None  # known up front (synthetic), else hashed from the digests
    fingerprint_parts: tuple | None = None  # (settings, file names) hashed with the digests
    prepare: Callable = lambda n_classes, crop: None


def folder_plan(spec: dict) -> Plan:
    folder = Path(spec["path"])
    images, masks, faults = pair_files(folder, spec["mask_suffix"])
    settings = {"format": FORMAT_VERSION, "scale": spec["scale"],
                "mask_suffix": spec["mask_suffix"]}
    key = None if faults else folder_key(settings, folder, [*images.values(), *masks.values()])
    plan = Plan(key, folder, {"kind": "folder", "path": str(folder), "scale": spec["scale"],
                              "mask_suffix": spec["mask_suffix"]})

    def prepare(n_classes: int, crop: int | None) -> None:
        scan = scan_folder(folder, spec["scale"], spec["mask_suffix"], n_classes, crop)
        plan.ids, plan.shapes, plan.mask_values = scan.ids, scan.shapes, scan.mask_values
        plan.names = [p.name for p in scan.image_files]
        plan.decode = lambda i: decode_pair(scan.image_files[i], scan.mask_files[i],
                                            spec["scale"], scan.mask_values)
        plan.fingerprint_parts = (settings, [f"imgs/{p.name}\0masks/{m.name}" for p, m
                                             in zip(scan.image_files, scan.mask_files)])

    plan.prepare = prepare
    return plan


def folder_key(settings: dict, folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(files):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()[:32]


def synthetic_plan(spec: dict) -> Plan:
    # The generator's own source is in the key: editing synthetic.py makes a new cache.
    code = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()
    key = hashlib.sha256(json.dumps({"format": FORMAT_VERSION, "code": code, **spec},
                                    sort_keys=True).encode()).hexdigest()[:32]
    n, size, seed = spec["images"], spec["size"], spec["seed"]

    def decode(i: int):
        image, mask = synthetic.synthetic_pair(size, np.random.default_rng([seed, i]))
        return image, (mask == synthetic.CRACK_VALUE).astype(np.uint8), ""

    ids = [f"synthetic_{i:05d}" for i in range(n)]
    return Plan(key, "synthetic crack set", {"kind": "synthetic", "images": n, "size": size,
                                             "seed": seed},
                ids=ids, names=ids, shapes=[(size, size, 3)] * n,
                mask_values=[0, synthetic.CRACK_VALUE], decode=decode, fingerprint=key[:16])


# ---- building --------------------------------------------------------------------------------

def layout(shapes: list[tuple]) -> np.ndarray:
    """(N, 5) int64: image offset, height, width, channels, mask offset."""
    shapes_ = np.asarray(shapes, np.int64).reshape(-1, 3)
    image_sizes, mask_sizes = shapes_.prod(1), shapes_[:, 0] * shapes_[:, 1]
    image_offsets = np.concatenate([[0], np.cumsum(image_sizes)[:-1]])
    mask_offsets = np.concatenate([[0], np.cumsum(mask_sizes)[:-1]])
    return np.column_stack([image_offsets, shapes_, mask_offsets]).astype(np.int64)


def write_cache(root: Path, plan: Plan) -> None:
    index = layout(plan.shapes)
    image_bytes = int(np.prod(plan.shapes, axis=1).sum())
    mask_bytes = int(sum(h * w for h, w, _ in plan.shapes))
    need = image_bytes + mask_bytes + index.nbytes
    free = shutil.disk_usage(root).free
    if free < need:
        raise no_space(plan, root, need, free)
    partial = root / f"{plan.key}.partial-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    began = time.perf_counter()
    log.info("decoding %d images of %s into %s (once: later runs map it)", len(plan.ids),
             plan.source, root / plan.key)
    try:
        np.save(partial / INDEX, index)
        with NpyWriter(partial / IMAGES, image_bytes) as images, \
                NpyWriter(partial / MASKS, mask_bytes) as masks:
            def write_one(i: int) -> str:
                image, mask, digest = plan.decode(i)
                if tuple(image.shape) != tuple(plan.shapes[i]) or mask.shape != image.shape[:2]:
                    raise DataFolderError(plan.source, [
                        f"{plan.names[i]}: changed while being decoded (now "
                        f"{image.shape[1]}x{image.shape[0]}): run again"])
                images.write(int(index[i, 0]), image)
                masks.write(int(index[i, 4]), mask)
                return digest
            digests = list(parallel_map(write_one, range(len(plan.ids)), desc="decoding"))
        write_manifest(partial, plan, index, digests, image_bytes, mask_bytes)
        publish(partial, root / plan.key)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(plan, root, need, shutil.disk_usage(root).free) from None
        raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already once published
    seconds = time.perf_counter() - began
    log.info("decoded %d images in %.1f s (%.0f images/s), %.1f MB on disk", len(plan.ids),
             seconds, len(plan.ids) / max(seconds, 1e-9), need / 2**20)


def no_space(plan: Plan, root: Path, need: int, free: int) -> DataFolderError:
    return DataFolderError(plan.source, [
        f"decoding needs {need / 2**30:.2f} GB free in the cache folder {root}, but "
        f"{free / 2**30:.2f} GB is free: free space there, or set cache_dir (or ${ENV_VAR}) "
        "to a folder with room"])


def write_manifest(folder: Path, plan: Plan, index: np.ndarray, digests: list[str],
                   image_bytes: int, mask_bytes: int) -> None:
    fingerprint = plan.fingerprint
    if fingerprint is None:  # folder: settings, file names and every file's bytes
        settings, names = plan.fingerprint_parts
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for name, file_digest in zip(names, digests):
            digest.update(f"{name}\0{file_digest}\n".encode())
        fingerprint = digest.hexdigest()[:16]
    manifest = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "ids": plan.ids,
                "files": plan.names, "mask_values": plan.mask_values,
                "source": plan.source_info, "images": len(plan.ids),
                "image_bytes": image_bytes, "mask_bytes": mask_bytes,
                "index_sha256": hashlib.sha256((folder / INDEX).read_bytes()).hexdigest(),
                # Read back once (the pages are still cached): what open(verify=True) checks.
                "pixels_sha256": {name: file_sha256(folder / name) for name in (IMAGES, MASKS)}}
    with open(folder / MANIFEST, "w") as handle:
        json.dump(manifest, handle)
        handle.flush()
        os.fsync(handle.fileno())


def publish(partial: Path, final: Path) -> None:
    try:
        os.rename(partial, final)  # atomic: readers see no cache or a complete one
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # Another node on shared storage finished first; theirs is as good as ours.


class NpyWriter:
    """A flat uint8 .npy file of a known length, written at offsets from several threads.
    pwrite rather than a writable memmap: a full disk is an OSError, not a SIGBUS."""

    def __init__(self, path: Path, length: int):
        with open(path, "wb") as handle:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": "|u1", "fortran_order": False, "shape": (length,)})
            self.header = handle.tell()
        self.fd = os.open(path, os.O_WRONLY)
        try:
            os.posix_fallocate(self.fd, 0, self.header + length)  # ENOSPC now, not hours in
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                os.close(self.fd)
                raise
            os.ftruncate(self.fd, self.header + length)

    def write(self, offset: int, array: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(array, np.uint8)).cast("B")
        position = self.header + offset
        while view:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            if exc[0] is None:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)


@contextlib.contextmanager
def build_lock(root: Path, key: str):
    """One builder per key at a time on this node (flock); leftovers of dead builders go."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", root / key)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            remove_dead_partials(root, key)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_dead_partials(root: Path, key: str) -> None:
    prefix = f"{key}.partial-{socket.gethostname()}-"
    for folder in root.glob(f"{prefix}*"):
        pid = folder.name[len(prefix):]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- opening ---------------------------------------------------------------------------------

def open_or_none(path: Path, spec: dict, cache_dir: str,
                 verify: bool = True) -> SegmentationData | None:
    """The cache at ``path``, or None; an invalid one is moved aside (then deleted)."""
    if not path.exists():
        return None
    try:
        return open_cache(path, spec, cache_dir, verify=verify)
    except CacheInvalid as error:
        log.warning("cache %s is unusable (%s): rebuilding it", path, error)
        aside = path.with_name(f"{path.name}.corrupt-{socket.gethostname()}-{os.getpid()}")
        with contextlib.suppress(OSError):
            os.rename(path, aside)
        shutil.rmtree(aside, ignore_errors=True)
        return None


def open_cache(path: Path, spec: dict, cache_dir: str = "",
               verify: bool = False) -> SegmentationData:
    """Map a complete cache read-only; CacheInvalid if any check fails. ``verify``: also hash
    the pixel files against the manifest (one read of the cache)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise CacheInvalid(f"format {manifest.get('format')}, expected {FORMAT_VERSION}")
        index_bytes = (path / INDEX).read_bytes()
        if hashlib.sha256(index_bytes).hexdigest() != manifest["index_sha256"]:
            raise CacheInvalid(f"{INDEX} does not match the manifest")
        index = np.load(io.BytesIO(index_bytes))
        images = np.load(path / IMAGES, mmap_mode="r")
        masks = np.load(path / MASKS, mmap_mode="r")
        n = manifest["images"]
        expected = {IMAGES: (images, manifest["image_bytes"]),
                    MASKS: (masks, manifest["mask_bytes"])}
        for name, (array, length) in expected.items():
            if array.dtype != np.uint8 or array.shape != (length,):
                raise CacheInvalid(f"{name} holds {array.dtype} {array.shape}, expected "
                                   f"uint8 ({length},)")
        if index.shape != (n, 5) or len(manifest["ids"]) != n:
            raise CacheInvalid(f"index of shape {index.shape} for {n} images")
        if verify:
            check_pixels(path, manifest)
    except CacheInvalid:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise CacheInvalid(f"{type(error).__name__}: {str(error)[:100]}") from None
    ref = CacheRef(str(path), manifest["fingerprint"], spec, cache_dir)
    return SegmentationData(
        images=views(np.asarray(images), index, image=True),
        masks=views(np.asarray(masks), index, image=False),
        mask_values=manifest["mask_values"], ids=manifest["ids"],
        source={**manifest["source"], "images": n, "cache": str(path)},
        cache=ref)


def check_pixels(path: Path, manifest: dict) -> None:
    """The pixel files as they were written, by their sha256 in the manifest."""
    expected = manifest.get("pixels_sha256")
    if not isinstance(expected, dict):
        raise CacheInvalid("no checksums of its pixel files (written by an older version)")
    names = [IMAGES, MASKS]
    for name, digest in zip(names, files_sha256([path / n for n in names], "checking cache")):
        if digest != expected.get(name):
            raise CacheInvalid(f"{name} differs from what was decoded (edited in place?)")


def views(flat: np.ndarray, index: np.ndarray, image: bool):
    """One (N, H, W[, C]) array when every item has one shape, else a tuple of views."""
    offsets = index[:, 0] if image else index[:, 4]
    shapes = [tuple(row) if image else tuple(row[:2]) for row in index[:, 1:4].tolist()]
    if len(set(shapes)) == 1:
        return flat.reshape(len(shapes), *shapes[0])
    return tuple(flat[o:o + int(np.prod(s))].reshape(s) for o, s in zip(offsets.tolist(), shapes))
