"""Run xenprobe against the mock Xen host: the native library under LD_PRELOAD.

The compiled scenario travels in a memfd, so nothing is left behind in /tmp and the
re-executed process (and anything it starts) reads exactly what was validated.
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import NoReturn

from xenprobe import streams
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
    raise CannotProbe("the mock host library is not built (xenprobe/_mockxen*.so is "
                      "missing)", "reinstall xenprobe: pip install .")


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
    try:
        fd = os.memfd_create(f"xenprobe-scenario-{scenario.name}", 0)  # inheritable
        data = compile_text(scenario).encode()
        while data:  # a short write is possible near RLIMIT_FSIZE
            data = data[os.write(fd, data):]
    except OSError as e:  # EMFILE, ENOMEM, EFBIG (RLIMIT_FSIZE)
        raise CannotProbe(f"cannot hand the scenario to the mock host: {e.strerror}"
                          ) from None
    env = dict(os.environ)
    env.update(environment(scenario, f"/proc/self/fd/{fd}", os.environ.get(LOG)))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    streams.release_reserved()  # the new process sees the streams as we were given them
    # -P: the current directory must not shadow the installed package (a source
    # checkout there has no compiled modules).
    os.execve(sys.executable, [sys.executable, "-P", "-m", "xenprobe", *argv], env)


def active() -> str | None:
    """The scenario this process runs under, if it is on the mock host."""
    return os.environ.get(ACTIVE)
