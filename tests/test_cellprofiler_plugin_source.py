"""What the plugin file must be, checked without CellProfiler: CellProfiler imports every plugin
at start-up in every worker, the desktop app runs Python 3.8, and the plugin speaks the
server's wire format on its own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from cellseg_hcs.serve import protocol

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "runcellseghcs.py"


def module_level_imports(tree: ast.Module) -> set[str]:
    roots = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    return roots


def test_plugin_imports_only_the_standard_library_and_cellprofiler_core_at_module_level():
    tree = ast.parse(PLUGIN.read_text())
    third_party = module_level_imports(tree) - set(sys.stdlib_module_names)
    assert third_party == {"cellprofiler_core"}


def test_plugin_parses_as_python_3_8_the_python_of_cellprofiler_4_desktop():
    ast.parse(PLUGIN.read_text(), feature_version=(3, 8))


def test_plugin_speaks_the_servers_wire_format():
    constants = {}
    for node in ast.parse(PLUGIN.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("_MAGIC", "_MAX_HEADER_BYTES"):
                constants[name] = eval(compile(ast.Expression(node.value), "plugin", "eval"))
            if name == "_PREFIX":
                constants[name] = node.value.args[0].value
    assert constants == {
        "_MAGIC": protocol.MAGIC,
        "_MAX_HEADER_BYTES": protocol.MAX_HEADER_BYTES,
        "_PREFIX": protocol.PREFIX.format,
    }
