# SPDX-License-Identifier: GPL-2.0-only
"""The source revision xenprobe was built from, for xenprobe_build_info.

One source: the file REVISION inside the package, written when the package is built
(setup.py runs describe() for build_py and sdist, so a wheel, an sdist and a Debian build
from either carry it). Without it (a source checkout run in place) the revision is
"unknown": xenprobe never runs git at run time. This module imports nothing from
xenprobe, so setup.py can load it on its own.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

FILE = "REVISION"
UNKNOWN = "unknown"
# A packager building from a tree without .git (a Debian source package made with git
# archive) sets this to the revision it was made from; it wins over git.
OVERRIDE = "XENPROBE_REVISION"


@cache
def revision() -> str:
    try:
        text = resources.files("xenprobe").joinpath(FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return UNKNOWN
    return text.strip() or UNKNOWN


def describe(source: Path) -> str | None:
    """`git describe --always --dirty` of the checkout at `source`; None when `source`
    is not a git checkout (an unpacked sdist) or git is missing."""
    if not (source / ".git").exists():
        return None
    try:
        p = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty",
                            "--tags"], capture_output=True, text=True, timeout=30,
                           check=False)
    except OSError:
        return None
    return p.stdout.strip() or None if p.returncode == 0 else None


def stamp(source: Path, package_dir: Path) -> str:
    """Write package_dir/REVISION for a build: $XENPROBE_REVISION when set, else git's
    answer when there is one, else keep the file an sdist carried, else "unknown".
    Returns what the file says."""
    target = package_dir / FILE
    found = os.environ.get(OVERRIDE, "").strip() or describe(source)
    if found is None:
        if target.exists():
            return target.read_text(encoding="utf-8").strip() or UNKNOWN
        found = UNKNOWN
    target.write_text(found + "\n", encoding="utf-8")
    return found
