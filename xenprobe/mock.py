"""Run xenprobe against the mock Xen host: the native library under LD_PRELOAD.

The compiled scenario travels in a memfd, so nothing is left behind in /tmp and the
re-executed process (and anything it starts) reads exactly what was validated.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import NoReturn

from xenprobe.errors import CannotProbe
from xenprobe.scenario import Scenario, compile_text

ACTIVE = "XENPROBE_MOCK_ACTIVE"  # the scenario name, set in the re-executed process
SCENARIO = "XENPROBE_MOCK_SCENARIO"
LOG = "XENPROBE_MOCK_LOG"


def library() -> Path:
    """The built mock library inside the installed package."""
    here = Path(__file__).resolve().parent
    for suffix in EXTENSION_SUFFIXES:
        candidate = here / f"_mockxen{suffix}"
        if candidate.exists():
            return candidate
    # The Debian package keeps the LD_PRELOAD library out of the production package.
    raise CannotProbe("the mock host is not installed (xenprobe/_mockxen*.so is missing)",
                      "on Debian: apt install xenprobe-mock; from source: pip install .")


def environment(scenario: Scenario, compiled_path: str, log: str | None = None
                ) -> dict[str, str]:
    """Variables that put a process on the mock host."""
    preload = os.environ.get("LD_PRELOAD", "")
    env = {
        "LD_PRELOAD": f"{library()}:{preload}" if preload else str(library()),
        SCENARIO: compiled_path,
        ACTIVE: scenario.name,
    }
    if log:
        env[LOG] = log
    return env


def write_compiled(scenario: Scenario, path: Path) -> Path:
    path.write_text(compile_text(scenario))
    return path


def reexec(scenario: Scenario, argv: list[str]) -> NoReturn:
    """Replace this process with xenprobe running on the mock host."""
    fd = os.memfd_create(f"xenprobe-scenario-{scenario.name}", 0)  # inheritable
    os.write(fd, compile_text(scenario).encode())
    env = dict(os.environ)
    env.update(environment(scenario, f"/proc/self/fd/{fd}", os.environ.get(LOG)))
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the current directory must not shadow the installed package (a source
    # checkout there has no compiled modules).
    os.execve(sys.executable, [sys.executable, "-P", "-m", "xenprobe", *argv], env)


def active() -> str | None:
    """The scenario this process runs under, if it is on the mock host."""
    return os.environ.get(ACTIVE)
