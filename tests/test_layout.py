"""The house rules of the layout: the Ray-free core (models/, data_pipeline/, training/) never
imports ray, wandb, optuna, the sweep layer or the benchmarks; the sweep layer never imports the
benchmarks; the import graph between the project's own modules has no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "data_pipeline", "training", "sweep", "bench")
CORE = ("models", "data_pipeline", "training")
FORBIDDEN_IN_CORE = ("ray", "wandb", "optuna", "sweep", "bench")


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def test_core_imports_no_ray_wandb_sweep_or_bench():
    offenders = []
    for name, path in project_files().items():
        if name.split(".")[0] not in CORE:
            continue
        for imported in imports_of(path):
            if imported.split(".")[0] in FORBIDDEN_IN_CORE:
                offenders.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not offenders, "\n".join(offenders)


def test_installed_package_never_imports_the_benchmarks():
    offenders = [f"{path.relative_to(ROOT)} imports {imported}"
                 for name, path in project_files().items() if not name.startswith("bench")
                 for imported in imports_of(path) if imported.split(".")[0] == "bench"]
    assert not offenders, "\n".join(offenders)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that returns to its start, or None (depth-first search)."""
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_project_import_graph_has_no_cycle():
    files = project_files()
    # A package's __init__ re-exporting its own modules is not a cycle worth a failure.
    graph = {name: {imported for imported in imports_of(path)
                    if imported in files and imported != name
                    and not name.startswith(imported + ".")}
             for name, path in files.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
