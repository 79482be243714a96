# SPDX-License-Identifier: GPL-2.0-only
"""The Debian packages built from this checkout (tools/build-deb), once per test session.

tests/test_deb.py inspects them; tests/realxen/test_service.py installs the production
package in a real Xen dom0. Building takes about a minute (dpkg-buildpackage, then
lintian); a session builds at most once, into the session's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tools" / "build-deb"
TOOLS = ("dpkg-buildpackage", "dh", "lintian")


@dataclass(frozen=True)
class DebianPackages:
    out: Path
    production: Path  # xenprobe_*.deb
    mock: Path        # xenprobe-mock_*.deb
    lintian: str      # lintian's report (tools/build-deb fails on an error)


def build(out: Path) -> DebianPackages:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        # CI installs them (tools/run-all); a developer's machine may not have them.
        if os.environ.get("CI"):
            raise AssertionError(f"Debian build tools missing in CI: {missing}")
        pytest.skip(f"Debian build tools not installed: {missing} (tools/run-all installs "
                    "them)")
    p = subprocess.run([str(BUILD), str(out)], capture_output=True, text=True,
                       timeout=1200, check=False)
    assert p.returncode == 0, f"tools/build-deb failed:\n{p.stdout[-3000:]}\n{p.stderr}"

    def one(pattern: str) -> Path:
        found = sorted(out.glob(pattern))
        assert len(found) == 1, (pattern, found)
        return found[0]
    return DebianPackages(out, one("xenprobe_*_amd64.deb"), one("xenprobe-mock_*_amd64.deb"),
                          (out / "lintian.txt").read_text())
