"""The house rules of the layout: the Ray-free core (models/, data_pipeline/, training/) never
imports ray, wandb, optuna, the sweep layer, the benchmarks or the tools; the sweep layer never
imports the benchmarks; nothing but the tools imports the tools (tools/gpu/: one-off GPU-session
scaffolding); the import graph between the project's own modules has no cycle, and the sweep
layer's is at most MAX_SWEEP_LEVELS deep."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "data_pipeline", "training", "sweep", "bench", "tools")
CORE = ("models", "data_pipeline", "training")
FORBIDDEN_IN_CORE = ("ray", "wandb", "optuna", "sweep", "bench", "tools")
# The longest chain of imports among sweep/'s modules (a helper imported from a heavy module
# drags its callers down with it; issue 23 brought 11 levels down to 8).
MAX_SWEEP_LEVELS = 8


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
                 for name, path in project_files().items()
                 if name.split(".")[0] not in ("bench", "tools")
                 for imported in imports_of(path) if imported.split(".")[0] == "bench"]
    assert not offenders, "\n".join(offenders)


def test_only_the_tools_import_the_tools():
    """The package and the benchmarks users run never depend on one-off scaffolding."""
    offenders = [f"{path.relative_to(ROOT)} imports {imported}"
                 for name, path in project_files().items() if name.split(".")[0] != "tools"
                 for imported in imports_of(path) if imported.split(".")[0] == "tools"]
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


def import_graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports. A module importing its own
    package (``from sweep.report import plots``) is left out: that is no dependency of note."""
    files = project_files()
    return {name: {imported for imported in imports_of(path)
                   if imported in files and imported != name
                   and not name.startswith(imported + ".")}
            for name, path in files.items()}


def test_project_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest path of imports in the graph, from its top module down to one that imports
    nothing in it (a cycle, which the test above refuses, is cut where it closes)."""
    chains: dict[str, list[str]] = {}

    def chain(node: str) -> list[str]:
        if node not in chains:
            chains[node] = []  # a cycle back to this node ends there
            below = [chain(nxt) for nxt in sorted(graph.get(node, ()))]
            chains[node] = [node, *max(below, key=len, default=[])]
        return chains[node]

    return max((chain(node) for node in sorted(graph)), key=len, default=[])


def in_sweep(name: str) -> bool:
    return name == "sweep" or name.startswith("sweep.")


def test_the_sweep_layer_is_at_most_eight_import_levels_deep():
    graph = {name: set(filter(in_sweep, imported))
             for name, imported in import_graph().items() if in_sweep(name)}
    chain = longest_chain(graph)
    assert len(chain) <= MAX_SWEEP_LEVELS, (
        f"sweep/ is {len(chain)} import levels deep (at most {MAX_SWEEP_LEVELS}): "
        + " -> ".join(chain))


def test_the_longest_chain_is_found_through_every_branch():
    graph = {"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": set(), "e": {"d"}}
    assert longest_chain(graph) == ["a", "b", "c", "d"]
    assert longest_chain({"a": {"b"}, "b": {"a"}}) == ["a", "b"]
    assert longest_chain({}) == []
