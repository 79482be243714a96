# SPDX-License-Identifier: GPL-2.0-only
"""Run xenprobe against the mock Xen host: the native library under LD_PRELOAD.

The compiled scenario travels in a memfd, so nothing is left behind in /tmp and the
re-executed process (and anything it starts) reads exactly what was validated.

Whether this process is on the mock host is asked of the process itself, never of the
environment alone: the mock library must be in the dynamic linker's global scope (a
symbol only it defines, found through dlsym(RTLD_DEFAULT)) and that symbol must lie in a
mapping of the mock library file (/proc/self/maps). So XENPROBE_MOCK_ACTIVE set by hand
on a real host is ignored (the real device is never labelled a mock host), and a
process that is on the mock is labelled so even without the variable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import NoReturn

from xenprobe.mock.scenario import Scenario, compile_text
from xenprobe.support import streams
from xenprobe.support.errors import CannotProbe

ACTIVE = "XENPROBE_MOCK_ACTIVE"  # the scenario name, set in the re-executed process
SCENARIO = "XENPROBE_MOCK_SCENARIO"
LOG = "XENPROBE_MOCK_LOG"
# Which mock host a process is on. Its privcmd memfd carries the id (native/mock/device.c),
# so the consumer scan of one mock host never sees the processes of another (another
# `check --mock`, another test run) that happen to run on the same machine.
HOST = "XENPROBE_MOCK_HOST"


def library() -> Path:
    """The built mock library inside the installed package."""
    here = Path(__file__).resolve().parents[1]
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
        HOST: host_id(),
    }
    if log:
        env[LOG] = log
    return env


def host_id() -> str:
    """This process's mock host, or a new one: a process that starts another one on the
    mock host passes its own on."""
    # os.urandom, not secrets: secrets loads hashlib, whose failed load under a small
    # RLIMIT_AS prints tracebacks of its own before xenprobe can say what ran out.
    return os.environ.get(HOST) or os.urandom(8).hex()


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


# Defined by native/mock (hypervisor.c, scenario.c) and by nothing else in a process.
MARKERS = ("hv_hypercall", "scenario_get")
UNNAMED = "(unnamed)"  # on the mock, but started without XENPROBE_MOCK_ACTIVE


def active() -> str | None:
    """The scenario this process runs under if it is really on the mock host, else
    None (whatever XENPROBE_MOCK_ACTIVE says)."""
    if not loaded():
        return None
    return os.environ.get(ACTIVE) or UNNAMED


def claimed_but_absent() -> bool:
    """XENPROBE_MOCK_ACTIVE is set, but the mock library is not loaded."""
    return bool(os.environ.get(ACTIVE)) and not loaded()


def loaded(maps: Path = Path("/proc/self/maps")) -> bool:
    """Whether the mock library is mapped into this process and its symbols are the
    ones the dynamic linker resolves."""
    try:
        ours = library()
        everything = ctypes.CDLL(None)  # dlopen(NULL): the global lookup scope
        addresses = [ctypes.cast(getattr(everything, name), ctypes.c_void_p).value
                     for name in MARKERS]
    except (CannotProbe, AttributeError, OSError):  # AttributeError: dlsym found none
        return False
    try:
        regions = _regions(maps.read_text())
    except OSError:
        return False
    for address in addresses:
        where = [path for lo, hi, path in regions if address is not None and lo <= address < hi]
        if not where or not _same_file(where[0], ours):
            return False
    return True


def _regions(text: str) -> list[tuple[int, int, str]]:
    """(start, end, path) of each file-backed mapping in /proc/PID/maps text."""
    out = []
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        lo, _, hi = fields[0].partition("-")
        out.append((int(lo, 16), int(hi, 16), fields[5]))
    return out


def _same_file(mapped: str, ours: Path) -> bool:
    try:
        return os.path.samefile(mapped, ours)
    except OSError:  # " (deleted)": the library was replaced since it was mapped
        return False
