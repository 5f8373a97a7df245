"""sweep/rundir.py is the one place a run-directory name is spelled: no other module of the sweep
or the benchmarks types one out, and every name it defines is used."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNDIR = ROOT / "sweep" / "rundir.py"
SCANNED = ("sweep", "bench", "tools")
SECTION = "# ---- names, relative to the run directory"
# Calls whose arguments are paths (pathlib, os.path, TrialStorage, Ray's RunConfig name).
PATH_CALLS = {"Path", "joinpath", "join", "glob", "rglob", "path", "where", "exists", "is_dir",
              "listdir", "read_text", "read_bytes", "write_bytes", "delete", "put_file",
              "upload", "download", "has", "RunConfig"}

# Module constants that spell a folder's name but are no path.
# wandb_mirror/records.py: the result key of a panel's path; wandb_mirror/sync.py: W&B's own
# ~/.config folder and command
NOT_PATHS = {"IMAGE_KEY", "USER_CONFIG_FOLDER"}


def run_dir_names() -> dict[str, str]:
    """{constant: value} of every name in rundir.py's name section (up to the next section)."""
    source = RUNDIR.read_text()
    start = source.index(SECTION)
    section = source[start:source.index("# ---- ", start + len(SECTION))]
    names = {}
    for node in ast.parse(section).body:
        if isinstance(node, ast.Assign):
            target = node.targets[0]
            targets = target.elts if isinstance(target, ast.Tuple) else [target]
            value = ast.literal_eval(node.value)
            values = value if isinstance(value, tuple) else (value,)
            names.update({t.id: v for t, v in zip(targets, values, strict=True)})
    return names


def is_file_name(constant: str, value: str) -> bool:
    """File names and result keys are distinctive: spelled anywhere, they count."""
    return "." in value or constant.endswith("_KEY")


def docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return {id(n.body[0].value) for n in nodes
            if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def path_literals(tree: ast.AST) -> set[int]:
    """String literals used as a path: an operand of ``/``, an argument of a path call, or a
    module's own constant (a second name for a run-dir folder), but for those NOT_PATHS."""
    used = {id(node.value) for node in getattr(tree, "body", [])
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id not in NOT_PATHS}
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            used.update({id(node.left), id(node.right)})
        elif isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(
                function, "id", "")
            if name in PATH_CALLS:
                used.update(id(a) for a in [*node.args, *(k.value for k in node.keywords)])
    return used


def spelled_names(source: str, names: dict[str, str]) -> list[str]:
    """'CONSTANT: literal' for each literal in ``source`` that spells a run-directory name."""
    tree = ast.parse(source)
    skipped, paths = docstrings(tree), path_literals(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) \
                or id(node) in skipped:
            continue
        text, parts = node.value, node.value.split("/")
        for constant, value in names.items():
            if is_file_name(constant, value):
                hit = text == value or value.rsplit("/", 1)[-1] in parts
            else:  # a folder's name may be an everyday word ("wandb", "confirm"): as a path only
                hit = (text == value and (id(node) in paths or "/" in value)
                       or holds_folder(parts, value.split("/")))
            if hit:
                found.append(f"{constant}: {text!r}")
    return found


def holds_folder(parts: list[str], folder: list[str]) -> bool:
    """Whether a path spelled in a string ("tune/", "a/wandb/data/b") goes through ``folder``."""
    size = len(folder)
    return any(parts[i:i + size] == folder for i in range(len(parts) - size))


def scanned_files() -> list[Path]:
    return [p for package in SCANNED for p in sorted((ROOT / package).rglob("*.py"))
            if p != RUNDIR]


def test_the_name_section_holds_every_kind_of_name():
    names = run_dir_names()
    assert {"EXPERIMENT_FILE", "TUNE_DIR", "STATUS_FILE", "MIRROR_FILE", "WANDB_SWEEP_FILE",
            "VAL_IMAGES_DIR", "ERROR_FILE", "FIRST_STEP_KEY"} <= set(names)
    assert names["CONFIRM_FILE"] == "confirm.json" and names["LOCK_FILE"] == "sweep.lock"


def test_the_check_finds_a_name_typed_out():
    names = run_dir_names()
    source = ('"""Reads trial_status.json."""\n'
              'status = run_dir / "wandb" / "mirror.json"\n'
              'rows = storage.read_text("tune", trial_id, "result.json")\n'
              'panel = f"val_images/{name}"\n'
              'settings = from_dict(values, "wandb")  # a word, not a path\n'
              'PANELS = "val_images"\n'
              'IMAGE_KEY = "val_images"\n'
              'message = f"{trial_id}: see tune/ and its error.txt"\n')
    assert sorted(spelled_names(source, names)) == [
        "MIRROR_FILE: 'mirror.json'", "RESULT_FILE: 'result.json'", "TUNE_DIR: 'tune'",
        "VAL_IMAGES_DIR: 'val_images'", "VAL_IMAGES_DIR: 'val_images/'", "WANDB_DIR: 'wandb'"]


def test_no_other_module_spells_a_run_dir_name():
    names = run_dir_names()
    offenders = [f"{path.relative_to(ROOT)}: {hit}" for path in scanned_files()
                 for hit in spelled_names(path.read_text(), names)]
    assert not offenders, "use sweep/rundir.py's constant instead:\n" + "\n".join(offenders)


def test_every_run_dir_name_is_used_outside_rundir():
    used = set()
    for path in scanned_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
    unused = sorted(set(run_dir_names()) - used)
    assert not unused, f"defined in sweep/rundir.py, used nowhere: {unused}"
