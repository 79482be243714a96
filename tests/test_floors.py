# SPDX-License-Identifier: GPL-2.0-only
"""The folders of xenprobe/ are floors (docs/layout.md): a module imports from its own
floor or those below, never from one above. Every import counts, also one made lazily
inside a function, also `from xenprobe import x` and relative imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xenprobe"

# The floors, from the ground up. mock/ and watch/ share a floor (neither needs the
# other); exporter/ sits above watch/ because `serve --watch` runs the watch in a thread.
# "" is the package itself (`xenprobe.__version__`) and _transport the compiled native
# transport: both are ground.
FLOORS: dict[str, int] = {
    "": 0, "_transport": 0, "support": 0,
    "xen": 1,
    "layers": 2,
    "probe": 3,
    "mock": 4, "watch": 4,
    "exporter": 5,
    "cli": 6, "__main__": 6,
}

# (importing module, imported module) pairs allowed to reach a floor above, each with why.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("xenprobe.watch.command", "xenprobe.exporter.config"):
        "`watch --arm-for-service` (the service's ExecStartPre) arms only when the "
        "service's config says watch = true, so it reads that config; lazily, at that "
        "one flag",
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every xenprobe module `path` imports, resolved to absolute dotted names."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from xenprobe.watch import arming` may import a submodule: count both.
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return {m for m in found if m == "xenprobe" or m.startswith("xenprobe.")}


def _floor(module: str) -> int | None:
    """The floor of a module, or None for a name that is an attribute, not a module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top not in FLOORS and (PACKAGE / top).exists():
        raise AssertionError(f"xenprobe/{top} has no floor in tests/test_floors.py")
    return FLOORS.get(top)


def _violations() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = _module_name(path)
        own = _floor(name)
        assert own is not None, f"{name} has no floor"
        for imported in sorted(_imports(path)):
            floor = _floor(imported)
            if floor is not None and floor > own:
                found.append((name, imported))
    return found


def test_every_folder_has_a_floor() -> None:
    folders = {p.name for p in PACKAGE.iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert not folders - set(FLOORS), "a new folder needs its floor here and in docs/layout.md"


def _excepted(importer: str, imported: str) -> bool:
    """`from xenprobe.exporter import config` names the package and the module: an
    exception for the module covers both."""
    return any(importer == who and (imported == what or what.startswith(imported + "."))
               for who, what in EXCEPTIONS)


def test_no_module_imports_from_a_floor_above() -> None:
    above = [pair for pair in _violations() if not _excepted(*pair)]
    assert not above, f"imports from a higher floor (importer, imported): {above}"


def test_every_exception_is_still_needed() -> None:
    stale = set(EXCEPTIONS) - set(_violations())  # the module's own pair must be there
    assert not stale, f"exceptions no import needs any more: {sorted(stale)}"


def test_the_check_sees_a_lazy_import_from_above(tmp_path: Path) -> None:
    """The parser itself: an import inside a function, relative, is found and resolved."""
    module = tmp_path / "xenprobe" / "xen" / "fake.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from ..probe import sweep\n    import xenprobe.cli\n")
    found = _imports(module, tmp_path)
    assert found == {"xenprobe.probe", "xenprobe.probe.sweep", "xenprobe.cli"}
    assert all((_floor(m) or 0) > FLOORS["xen"] for m in found)
