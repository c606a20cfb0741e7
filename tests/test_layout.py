"""The package's structure, read from the code: import floors that follow the data flow, no import
cycle, and the run-folder layout spelled out in one place (docs/development.md describes both)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "indextts"

FLOORS = [
    ("foundation", ["errors", "atomic_files", "fingerprints", "timing", "hub", "runtime", "releases", "config",
                    "audio", "text", "sentences", "dims", "gpt", "dvae", "bigvgan", "checkpoints", "checkpoint_folder",
                    "tiny", "download", "asr", "families", "v2", "base_files"]),
    ("contracts", ["contracts", "run_folder"]),
    ("adaptation", ["lora"]),
    ("extraction", ["extraction"]),
    ("preparation", ["prepare"]),  # above extraction: it counts transcripts and caps clips as extraction will
    ("training", ["training"]),
    ("evaluation and inference", ["evaluation", "inference"]),
    ("serving and the UI", ["serving", "webui", "report", "voice"]),
    ("commands", ["cli", "__main__", "infer", "eval", "serve"]),
]
"""Bottom to top; the first name of a module's dotted path below ``indextts`` picks its floor. A
module imports from its own floor or lower ones only."""

RUN_LAYOUT_OWNERS = (PACKAGE / "run_folder.py", PACKAGE / "checkpoint_folder")
RUN_LAYOUT = re.compile(r"checkpoints/|config\.yaml|metrics\.jsonl|(^|/)step_|^checkpoints$")
"""Literals of the run and base folder layouts, allowed in code only inside their owners: RunFolder and
the CheckpointFolder package."""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:`` (read by type checkers, never imported at run time)."""
    blocks = [n for n in ast.walk(tree) if isinstance(n, ast.If) and isinstance(n.test, ast.Name)
              and n.test.id == "TYPE_CHECKING"]
    return {id(inner) for block in blocks for statement in block.body for inner in ast.walk(statement)}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports at run time (at any depth of the file: lazy imports count too)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(known)
            # ``from package import submodule`` needs the submodule, not what the package's face exports
            found |= submodules if len(submodules) == len(node.names) else submodules | {node.module}
    return {name for name in found if name in known and name != module_name(path)}


def floor_of(module: str) -> int:
    if module.endswith(".__main__"):
        return len(FLOORS) - 1  # ``python -m`` entry points are commands, wherever they sit
    first = module.split(".")[1] if "." in module else module
    for index, (_, names) in enumerate(FLOORS):
        if first in names:
            return index
    raise AssertionError(f"{module} has no floor: add its first name to FLOORS (and to docs/development.md)")


def test_every_import_goes_to_the_same_floor_or_below():
    known = modules()
    upward = [f"{module} ({FLOORS[floor_of(module)][0]}) imports {target} ({FLOORS[floor_of(target)][0]})"
              for module, path in known.items() if module != "indextts"
              for target in sorted(imports(path, known)) if target != "indextts" and floor_of(target) > floor_of(module)]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {module: imports(path, known) - {"indextts"} for module, path in known.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]) if target in trail else target)
            elif target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def _docstrings(tree: ast.AST) -> set[int]:
    """Strings that stand alone as statements: docstrings of modules, classes, functions and attributes."""
    return {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)}


def test_run_layout_literals_live_only_in_their_owners():
    found = []
    for module, path in modules().items():
        if any(path == owner or owner in path.parents for owner in RUN_LAYOUT_OWNERS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and RUN_LAYOUT.search(node.value):
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.value[:70]!r}")
    assert not found, "layout literals outside RunFolder and CheckpointFolder:\n" + "\n".join(found)
