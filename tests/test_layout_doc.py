# SPDX-License-Identifier: GPL-2.0-only
"""docs/layout.md has one line per Python module and package of xenprobe, and names
nothing that is gone: a module added without its line fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "layout.md"


def _described() -> dict[str, str]:
    block = DOC.read_text().split("```")[1]
    lines = {}
    for line in block.strip().splitlines():
        m = re.match(r"^(\S+)\s{2,}(\S.*)$", line)
        assert m, f"docs/layout.md: not 'path  description': {line!r}"
        lines[m.group(1)] = m.group(2)
    return lines


def _modules() -> set[str]:
    found = set()
    for path in (ROOT / "xenprobe").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if "__pycache__" in rel:
            continue
        found.add(rel[: -len("__init__.py")] if rel.endswith("/__init__.py") else rel)
    return found


def test_every_module_has_a_line() -> None:
    missing = sorted(_modules() - set(_described()))
    assert not missing, f"docs/layout.md has no line for: {missing}"


def test_every_line_names_something_that_exists() -> None:
    gone = sorted(p for p in _described() if not (ROOT / p).exists())
    assert not gone, f"docs/layout.md names what is not in the tree: {gone}"
