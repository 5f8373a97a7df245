"""Build `.gpu_carry/`: what the lent GPU machine lacks to run a real sweep, packed under a
call's 64 MiB. That machine has torch 2.11 + CUDA 13 for Python 3.12 and no network, and no
ray, optuna or wandb (../shared/DESIGN.md, 2026-11-26; /work/.library/device/KINDS.md lists
everything it has).

    python -m tools.gpu.carry            # downloads (~215 MB, cached in .gpu_carry_build/)
    # then, on the GPU machine: bash tools/gpu/sweep.sh $OUT   (run with carry [".gpu_carry"])

Steps: `pip download` ray[tune,default], optuna and wandb with every dependency as cp312
manylinux wheels; drop the packages the machine already has; install the rest into a plain
folder (`pip install --target`); strip Ray's Java jars and the dashboard's source maps (unused,
44 MB); pack the folder as `site.tar.xz`. Small wheels of packages the machine has go beside
it in `fallback/`: tools/gpu/env.py installs one there only if the machine's own version does
not satisfy a carried package (protobuf for wandb, say). Nothing here is committed: both
folders are in .gitignore.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARRY, BUILD = ROOT / ".gpu_carry", ROOT / ".gpu_carry_build"
LIMIT = 64 * 2**20  # a call carries the working tree and its carried paths up to 64 MiB
# The versions this project's tests run with here (DESIGN.md); override with --pin.
PINS = ["ray[tune,default]==2.60.0", "optuna==5.0.0", "wandb==0.31.0"]
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_28_x86_64", "manylinux1_x86_64",
             "manylinux_2_5_x86_64"]
TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
          *[arg for p in PLATFORMS for arg in ("--platform", p)]]
# On the GPU machine already (KINDS.md's package list, read 2026-11-17; DESIGN.md 2026-11-26).
# Normalised names (PEP 503). Their wheels are not carried, except small ones as fallbacks.
PRESENT = set("""
aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs certifi charset-normalizer
click cloudpickle colorama filelock frozenlist fsspec grpcio h11 httpcore httpx idna jinja2
markupsafe msgpack multidict numpy packaging pandas prometheus-client propcache protobuf psutil
pyarrow pygments python-dateutil pyyaml requests rich six tqdm typing-extensions urllib3 wrapt
xxhash yarl zipp
""".split())
FALLBACK_MAX = 1 * 2**20  # fallback wheels: only the small ones (no numpy, pandas, pyarrow...)
# Unused on the GPU machine and large: Ray's Java worker support and the dashboard's source maps.
STRIP_DIRS = ["ray/jars", "bin"]  # bin/: console scripts whose shebang names this machine
STRIP_GLOBS = ["*.js.map", "__pycache__"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> str:
    return normalise(path.name.split("-")[0])


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def download(pins: list[str], wheels: Path) -> list[Path]:
    wheels.mkdir(parents=True, exist_ok=True)
    pip("download", "--quiet", "--dest", str(wheels), *TARGET, *pins)
    return sorted(wheels.glob("*.whl"))


def install(wheels: list[Path], site: Path) -> None:
    shutil.rmtree(site, ignore_errors=True)
    pip("install", "--quiet", "--no-deps", "--no-index", "--no-compile", "--target", str(site),
        *TARGET, *map(str, wheels))


def strip(site: Path) -> int:
    """Remove what the GPU run never uses; returns the bytes saved."""
    before = folder_bytes(site)
    for name in STRIP_DIRS:
        shutil.rmtree(site / name, ignore_errors=True)
    for pattern in STRIP_GLOBS:
        for path in list(site.rglob(pattern)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return before - folder_bytes(site)


def pack(site: Path, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XZ_OPT": f"-9 -T{os.cpu_count() or 1}"}
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(site), "."], check=True, env=env)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def tree_bytes() -> int:
    """What travels besides the carry: the tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.split(b"\0")
    return sum((ROOT / os.fsdecode(p)).stat().st_size for p in listed
               if p and (ROOT / os.fsdecode(p)).is_file())


def build(pins: list[str]) -> dict:
    wheels = download(pins, BUILD / "wheels")
    carried = [w for w in wheels if wheel_name(w) not in PRESENT]
    fallbacks = [w for w in wheels if wheel_name(w) in PRESENT
                 and w.stat().st_size <= FALLBACK_MAX]
    skipped = [w for w in wheels if wheel_name(w) in PRESENT and w not in fallbacks]
    site = BUILD / "site"
    install(carried, site)
    staged = folder_bytes(site)
    saved = strip(site)
    shutil.rmtree(CARRY, ignore_errors=True)
    pack(site, CARRY / "site.tar.xz")
    (CARRY / "fallback").mkdir()
    for wheel in fallbacks:
        shutil.copy2(wheel, CARRY / "fallback" / wheel.name)
    manifest = {
        "pins": pins, "python": "3.12", "platforms": PLATFORMS,
        "carried": {w.name: w.stat().st_size for w in carried},
        "fallback": {w.name: w.stat().st_size for w in fallbacks},
        "present_not_carried": [w.name for w in skipped],
        "site_bytes": staged, "stripped_bytes": saved,
        "tarball_bytes": (CARRY / "site.tar.xz").stat().st_size,
        "fallback_bytes": folder_bytes(CARRY / "fallback"),
    }
    (CARRY / "manifest.json").write_text(json.dumps(manifest, indent=1))
    manifest["carry_bytes"] = folder_bytes(CARRY)
    manifest["tree_bytes"] = tree_bytes()
    return manifest


def mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu.carry",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pin", action="append", help=f"a requirement (default: {PINS})")
    args = parser.parse_args(argv)
    m = build(args.pin or PINS)
    print(f"carried {len(m['carried'])} packages: {mb(sum(m['carried'].values()))} as wheels, "
          f"{mb(m['site_bytes'])} installed, {mb(m['stripped_bytes'])} stripped "
          f"(ray/jars, *.js.map, bin/, __pycache__)")
    print(f"  site.tar.xz    {mb(m['tarball_bytes'])}")
    print(f"  fallback/      {mb(m['fallback_bytes'])} ({len(m['fallback'])} small wheels of "
          f"packages the GPU machine has)")
    print(f"  not carried    {', '.join(m['present_not_carried']) or '-'} (present there)")
    total = m["carry_bytes"] + m["tree_bytes"]
    print(f".gpu_carry/ {mb(m['carry_bytes'])} + working tree {mb(m['tree_bytes'])} = "
          f"{mb(total)} of the {mb(LIMIT)} a call carries")
    if total > LIMIT:
        print("error: over the limit: strip more (STRIP_DIRS) or carry fewer packages",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
