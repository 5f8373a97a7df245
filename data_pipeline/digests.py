"""Content hashes of files, read in chunks (a file never has to fit in memory): what a folder data
set holds (a sweep records it when it starts and compares it when it resumes), and the checksums
that tell a decoded cache edited in place from the one that was built."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm import tqdm

from data_pipeline.folder import files_in
from data_pipeline.parallel import parallel_map

CHUNK = 1 << 20
SHOW_PROGRESS_FROM = 256 << 20  # bytes: below this, hashing is over before a bar would help


def file_sha256(path: str | Path, progress: tqdm | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)  # releases the GIL: threads hash files side by side
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def files_sha256(paths: list[Path], desc: str) -> list[str]:
    """Each file's sha256, with a byte-counting progress bar on a terminal when they are large."""
    total = sum(Path(p).stat().st_size for p in paths)
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False,
              disable=None if total >= SHOW_PROGRESS_FROM else True) as bar:
        return [file_sha256(p, bar) for p in paths]


def folder_digests(root: str | Path) -> dict[str, list]:
    """``{"imgs/a.png": [size, sha256], "masks/a_mask.png": [...]}`` for every image file of a
    folder data set (the files the loader would pair), sorted by name. Files are hashed in
    parallel with a progress bar (one per file) on a terminal: a large folder costs one read."""
    root = Path(root)
    files = [path for sub in ("imgs", "masks") if (root / sub).is_dir()
             for path in files_in(root / sub, [])]
    digests = parallel_map(lambda path: [path.stat().st_size, file_sha256(path)], files,
                           desc="hashing the data set")
    return {path.relative_to(root).as_posix(): digest for path, digest in zip(files, digests)}
