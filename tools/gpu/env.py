"""On the GPU machine, after `.gpu_carry/site.tar.xz` is unpacked into a folder on PYTHONPATH:
check that every carried package's requirements are met by what is importable (the carried
folder first, then the machine's own packages), install a fallback wheel where the machine's
version does not do (tools/gpu/carry.py), then import ray, optuna and wandb. Writes what it
found as JSON; exit status 1 if the sweep cannot run. Standard library and `packaging` only.

    python3 -m tools.gpu.env --site /tmp/gpu_site --fallback .gpu_carry/fallback --out env.json
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# The extras the carry was built with (tools/gpu/carry.py PINS); other packages: base needs.
EXTRAS = {"ray": ("tune", "default")}
IMPORTS = ["ray", "ray.tune", "ray.tune.search.optuna", "optuna", "wandb", "torch"]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(site: Path) -> list[tuple[str, object]]:
    """(needed by, Requirement) for every carried distribution, markers evaluated."""
    from packaging.requirements import Requirement

    found = []
    for dist in metadata.distributions(path=[str(site)]):
        owner = normalise(dist.metadata["Name"])
        for line in dist.requires or []:
            requirement = Requirement(line)
            extras = ("", *EXTRAS.get(owner, ()))
            if requirement.marker is None or any(
                    requirement.marker.evaluate({"extra": extra}) for extra in extras):
                found.append((owner, requirement))
    return found


def unmet(site: Path) -> list[dict]:
    missing = []
    for owner, requirement in requirements(site):
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            version = None
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append({"package": normalise(requirement.name), "needed_by": owner,
                            "wants": str(requirement.specifier) or "any", "found": version})
    return missing


def install_fallbacks(missing: list[dict], fallback: Path, site: Path) -> list[str]:
    """Unzip the carried wheel of each package found too old (or absent) into the site folder,
    which comes first on sys.path; the machine's own copy stays where it is, shadowed."""
    wheels = {normalise(w.name.split("-")[0]): w for w in fallback.glob("*.whl")}
    installed = []
    for name in dict.fromkeys(m["package"] for m in missing):
        if name in wheels:
            with zipfile.ZipFile(wheels[name]) as archive:
                archive.extractall(site)
            installed.append(wheels[name].name)
    importlib.invalidate_caches()
    return installed


def try_imports() -> dict:
    result = {}
    for name in IMPORTS:
        # A fresh interpreter each: a failed import must not poison the next one.
        done = subprocess.run([sys.executable, "-c", f"import {name}, sys; "
                               f"print(getattr(sys.modules['{name.split('.')[0]}'], "
                               "'__version__', 'ok'))"], capture_output=True, text=True)
        result[name] = (done.stdout.strip() if done.returncode == 0
                        else "FAILED: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return result


def gpu_info() -> dict:
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,driver_version",
                           "--format=csv,noheader"], capture_output=True, text=True)
    return {"nvidia_smi": done.stdout.strip() or done.stderr.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.env")
    parser.add_argument("--site", type=Path, required=True)
    parser.add_argument("--fallback", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    before = unmet(args.site)
    fixed = install_fallbacks(before, args.fallback, args.site) if before else []
    after = unmet(args.site) if fixed else before
    report = {"python": sys.version.split()[0], "unmet_before_fallback": before,
              "fallback_installed": fixed, "unmet": after, "imports": try_imports()}
    try:
        report.update(gpu_info())
    except FileNotFoundError:
        report["nvidia_smi"] = "not found"
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    failed = [k for k, v in report["imports"].items() if str(v).startswith("FAILED")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
