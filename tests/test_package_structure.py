"""The package's shape: no import cycle (also through imports made inside functions), and the
light paths import no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "cellseg_hcs"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every package module ``path`` imports, at its top or inside a function."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            root = (
                f"{base}.{node.module}"
                if node.level and node.module
                else (base if node.level else node.module or "")
            )
            targets = [root] + [f"{root}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        found |= {target for target in targets if target in modules and target != name}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_of_the_package_imports_itself_back_through_others():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(path) for path in files}
    graph = {_module(path): _imports(path, modules) for path in files}
    # A package's __init__ importing its own submodules is how Python packages are made.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(f"{m}.")}
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_settings_model_files_and_the_cli_import_no_torch():
    code = (
        "import sys, cellseg_hcs.settings, cellseg_hcs.model.model, cellseg_hcs.cli, "
        "cellseg_hcs.field.pipeline; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_settings_and_the_cli_start_without_numpy_or_the_runtime():
    """`cellseg-hcs --help` and a settings object stay light: numpy and the inference
    runtime are imported by the commands that run a model, not at start."""
    code = (
        "import sys, cellseg_hcs.settings, cellseg_hcs.cli; "
        "from cellseg_hcs.settings import FieldSettings; FieldSettings(); "
        "print(sorted(m for m in ('numpy', 'cellseg_hcs.runtime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
