"""
The package's layout is its architecture: wings (subpackages) by concern,
whose imports run one way, each a face of public names over private rooms,
none of them too big to read.  Read from the source, not from imports at
run time, so that an import under C{TYPE_CHECKING} or inside a function
counts as much as any other.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tailmirror"

#: The wings from the ground up: a wing may import from those below it and
#: from itself; wings on one floor do not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("base",),
    ("upstream",),
    ("pages",),
    ("files",),
    ("prefetch", "observe", "offline"),
    ("web",),
)
#: The modules of the package itself: its face and version (on the ground
#: floor), and the assembly above every wing.
GROUND_MODULES = ("tailmirror", "tailmirror._version")
MOST_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _isPackage(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(name: str, modules: dict[str, Path]) -> set[str]:
    """
    The package's modules that module C{name} imports, wherever in it.
    """
    tree = ast.parse(modules[name].read_text())
    here = name if _isPackage(name, modules) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tailmirror":
                continue
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "tailmirror")
    found.discard(name)
    return found


def _wing(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in {w for floor in FLOORS for w in floor} else None


def _floor(name: str) -> int:
    """
    How high a module stands: its wing's floor; the assembly above all.
    """
    if name in GROUND_MODULES:
        return 0
    wing = _wing(name)
    if wing is None:
        return len(FLOORS)
    return next(i for i, floor in enumerate(FLOORS) if wing in floor)


def test_importsRunDown() -> None:
    """
    No module imports from a wing above its own, nor from another wing on
    its own floor; the assembly (C{tap}, C{_service}, C{_mirror}) is
    imported by no wing.
    """
    modules = _modules()
    upward = []
    for name in modules:
        for target in _imports(name, modules):
            if _wing(target) == _wing(name) and target not in GROUND_MODULES:
                continue  # within a wing, or within the assembly
            if _floor(target) >= _floor(name) and target not in GROUND_MODULES:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_wingsThroughTheirFace() -> None:
    """
    A module imports another wing's names from that wing's face (its
    C{__init__}), never from one of its private rooms.
    """
    modules = _modules()
    private = []
    for name in modules:
        for target in _imports(name, modules):
            wing = _wing(target)
            if wing is not None and wing != _wing(name) and target != f"tailmirror.{wing}":
                private.append(f"{name} -> {target}")
    assert private == []


def test_noLoop() -> None:
    """
    No module imports itself through others, within a wing or across.
    """
    modules = _modules()
    graph = {name: {t for t in _imports(name, modules) if t in modules} for name in modules}
    # A wing's face imports its rooms; a room importing its own face would
    # be a loop, and counts.
    state: dict[str, int] = {}
    loops = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                loops.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in modules:
        if name not in state:
            visit(name, [name])
    assert loops == []


def test_roomsFitOnAFewScreens() -> None:
    """
    No module of the package is over L{MOST_LINES} lines.
    """
    modules = _modules()
    big = {name: n for name, path in modules.items() if (n := len(path.read_text().splitlines())) > MOST_LINES}
    assert big == {}


def test_facesSayWhatTheyHold() -> None:
    """
    Each wing's face says in its docstring what the wing does, and
    re-exports exactly the names in its C{__all__}, each of which exists.
    """
    for floor in FLOORS:
        for wing in floor:
            module = importlib.import_module(f"tailmirror.{wing}")
            assert module.__doc__ and len(module.__doc__.split()) > 20, wing
            tree = ast.parse((PACKAGE / wing / "__init__.py").read_text())
            imported = {
                alias.asname or alias.name
                for node in tree.body
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
            assert sorted(module.__all__) == sorted(imported), wing
            for name in module.__all__:
                assert hasattr(module, name), (wing, name)


def test_everyWingShips() -> None:
    """
    The packages setup.cfg finds (as a build finds them) are every folder
    of the package that holds modules, and the twistd plugin's folder,
    which has no C{__init__.py}: a wing the build does not find is missing
    only from an installed mirror, never from the checkout tests run in.
    """
    import configparser

    from setuptools import find_namespace_packages

    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    assert config["options"]["packages"].strip() == "find_namespace:"
    find = config["options.packages.find"]
    found = set(
        find_namespace_packages(
            where=str(PACKAGE.parent), include=find["include"].split(), exclude=find["exclude"].split()
        )
    )
    folders = {
        ".".join(path.parent.relative_to(PACKAGE.parent).parts)
        for path in [*PACKAGE.rglob("*.py"), PACKAGE.parent / "twisted" / "plugins" / "tailmirror_plugin.py"]
    }
    assert found == folders
