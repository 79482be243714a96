# SPDX-License-Identifier: GPL-2.0-only
"""Consumers at risk: the other processes on the host that hold the privcmd device open
(qemu, xenstored, a toolstack, a monitoring agent...), and whether each can read a
hypercall result wrong. docs/consumers.md has the sources behind every verdict.

What decides it is how the holder issues memory ops, which is where results at and above
2^31 occur (maximum_ram_page, the reservations, maximum_gpfn):

- `int_path`: it maps a libxenctrl older than 4.15.1, whose do_memory_op issues the
  hypercall through the plain privcmd ioctl, which hands the result back in an `int`
  (xc_private.c@RELEASE-4.14.6:331-348). Results at or above 2^31 are lost.
- `multicall`: it maps libxenctrl 4.16 or later, which wraps memory ops in a one-entry
  multicall and reads the 64-bit result field (xc_private.c@RELEASE-4.15.1:340-375).
- `unknown`: no libxenctrl mapped (raw ioctls of its own, or another library), its
  mappings could not be read, or 4.15, whose SONAME is the same for 4.15.0 (int path)
  and 4.15.1 (multicall).
- `error_only`: a 32-bit program. Linux's privcmd has no .compat_ioctl, so on a 64-bit
  kernel every privcmd ioctl of a 32-bit process fails with ENOTTY: it gets no value at
  all, never a clamped one (Xen's compat path is chosen by the calling vCPU's mode).

psutil lists and names the processes. Device nodes are not among psutil's open_files(),
so the descriptors are read from /proc/PID/fd (each a symlink to what was opened), the
word size is the ELF class of /proc/PID/exe (the running image) and the libraries are
read from /proc/PID/maps. Reading another process's fd links, exe and maps passes
ptrace_may_access(PTRACE_MODE_READ_FSCREDS), which a root process holding fewer
capabilities than its target passes only with CAP_SYS_PTRACE: what failed is counted,
never taken for "closed meanwhile". Everything honours psutil.PROCFS_PATH.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from xenprobe.xen.elf import elf_class, soname

if TYPE_CHECKING:
    import psutil

# What /proc/PID/fd shows for the device: the pvops device node, and the xenfs file.
DEVICES = ("/dev/xen/privcmd", "/proc/xen/privcmd")
# On the mock host each process's privcmd is a memfd named after its mock host
# (native/mock/device.c, XENPROBE_MOCK_HOST in xenprobe/mock/launcher.py).
MOCK_DEVICE = "/memfd:xenprobe-mock-privcmd (deleted)"  # a mock host with no id

# A libxenctrl's file name or SONAME: libxenctrl.so.4.14, libxenctrl.so.4.17.0, ...
_LIBXENCTRL = re.compile(r"^libxenctrl\.so\.(\d+)\.(\d+)(?:\.\d+)*$")
CAP_SYS_PTRACE = 19  # include/uapi/linux/capability.h


class MemopPath(enum.StrEnum):
    INT_PATH = "int_path"      # libxenctrl < 4.15: memory ops through the int ioctl
    MULTICALL = "multicall"    # libxenctrl >= 4.16: one-entry multicall, 64 bits kept
    UNKNOWN = "unknown"        # no libxenctrl (raw ioctls?), unreadable, or 4.15
    ERROR_ONLY = "error_only"  # 32-bit: every privcmd ioctl fails with ENOTTY

    @property
    def exposed(self) -> bool:
        return self is MemopPath.INT_PATH


# How each verdict is shown, and the order holders are listed in (most at risk first).
VERDICT_ORDER = (MemopPath.INT_PATH, MemopPath.UNKNOWN, MemopPath.ERROR_ONLY, MemopPath.MULTICALL)
MEANING = {
    MemopPath.INT_PATH: "memory_op results at or above 2^31 lost (libxenctrl < 4.15.1)",
    MemopPath.MULTICALL: "keeps all 64 bits (libxenctrl one-entry multicall)",
    MemopPath.UNKNOWN: "no libxenctrl to judge by (raw ioctls of its own?)",
    MemopPath.ERROR_ONLY: "32-bit: privcmd ioctls fail with ENOTTY (no compat_ioctl)",
}


@dataclass(frozen=True)
class Library:
    path: str                     # as /proc/PID/maps names it
    version: tuple[int, int] | None  # Xen release (major, minor), from SONAME or name

    @property
    def release(self) -> str | None:
        return None if self.version is None else f"{self.version[0]}.{self.version[1]}"


def library_version(name: str) -> tuple[int, int] | None:
    """(4, 14) for libxenctrl.so.4.14 / libxenctrl.so.4.14.0; None for anything else."""
    m = _LIBXENCTRL.match(name)
    return (int(m[1]), int(m[2])) if m else None


def judge(bits: int | None, lib: Library | None) -> MemopPath:
    """What a holder gets from a memory op, from its word size and its libxenctrl."""
    if bits == 32:
        return MemopPath.ERROR_ONLY
    if lib is None or lib.version is None or lib.version == (4, 15):
        return MemopPath.UNKNOWN
    return MemopPath.INT_PATH if lib.version < (4, 15) else MemopPath.MULTICALL


@dataclass(frozen=True)
class Consumer:
    pid: int
    name: str                 # the process name (comm), "" when it could not be read
    exe: str                  # the executable's path, "" when it could not be read
    bits: int | None          # 32 or 64 (ELF class of the running image), None: unknown
    device: str               # the path it holds open
    libxenctrl: Library | None = None  # the libxenctrl it maps, if any
    maps_read: bool = True    # False: its mappings could not be read

    @property
    def verdict(self) -> MemopPath:
        return judge(self.bits, self.libxenctrl)

    def as_json(self) -> dict[str, object]:
        lib = self.libxenctrl
        return {"pid": self.pid, "name": self.name, "exe": self.exe, "bits": self.bits,
                "device": self.device,
                "libxenctrl": None if lib is None else {"path": lib.path,
                                                        "release": lib.release},
                "maps_read": self.maps_read, "verdict": self.verdict.value}


@dataclass(frozen=True)
class Consumers:
    found: tuple[Consumer, ...] = ()
    unreadable: int = 0       # processes whose descriptors could not be read
    devices: tuple[str, ...] = field(default=DEVICES)
    # procfs hides processes this scan may not ptrace-read (hidepid=invisible or
    # ptraceable, and no CAP_SYS_PTRACE): some holders may not even be listed.
    hidden: bool = False

    @property
    def maps_unreadable(self) -> int:
        """Holders whose libraries could not be read (their verdict is `unknown`)."""
        return sum(1 for c in self.found if not c.maps_read)

    @property
    def complete(self) -> bool:
        """Every process was looked at in full: "none found" then means none."""
        return not (self.unreadable or self.maps_unreadable or self.hidden)

    def ordered(self) -> tuple[Consumer, ...]:
        """Most at risk first, then by pid."""
        return tuple(sorted(self.found, key=lambda c: (VERDICT_ORDER.index(c.verdict),
                                                       c.pid)))

    def by_verdict(self) -> dict[str, int]:
        """Holders per verdict (always every verdict)."""
        counts = {v.value: 0 for v in VERDICT_ORDER}
        for c in self.found:
            counts[c.verdict.value] += 1
        return counts

    def unreadable_by_reason(self) -> dict[str, int]:
        """What could not be read: `fds` (a process's descriptors: holder or not is not
        known) and `maps` (a holder's libraries: its verdict is not known)."""
        return {"fds": self.unreadable, "maps": self.maps_unreadable}

    def as_json(self) -> dict[str, object]:
        return {"devices": list(self.devices), "complete": self.complete,
                "unreadable_processes": self.unreadable_by_reason(),
                "hidden_by_procfs": self.hidden,
                "processes": [c.as_json() for c in self.ordered()]}


def mock_device(host: str | None) -> str:
    """What /proc/PID/fd shows for the privcmd of mock host `host`."""
    return f"/memfd:xenprobe-mock-privcmd:{host} (deleted)" if host else MOCK_DEVICE


def devices_for(mock: bool) -> tuple[str, ...]:
    return (*DEVICES, mock_device(os.environ.get("XENPROBE_MOCK_HOST"))) if mock else DEVICES


def scan_host(mock: bool, *, exclude: Iterable[int] = ()) -> Consumers:
    """The consumers of this host's privcmd. On the mock host, a process xenprobe may
    not read is not counted as a blind spot: the mock host's processes are the ones
    started on it (with its id), by the same user as the test or the operator that
    started it; the machine's other processes are not on that host."""
    return scan(devices_for(mock), exclude=exclude, count_unreadable=not mock)


def scan(devices: Sequence[str] = DEVICES, *, exclude: Iterable[int] = (),
         count_unreadable: bool = True) -> Consumers:
    """Every process (but those in `exclude`) holding one of `devices` open, lowest pid
    first. Processes that end while being read are skipped; those whose descriptors are
    not ours to read are counted in `unreadable`."""
    import psutil  # noqa: PLC0415 (only when looking: `check` starts faster)

    wanted = set(devices)
    skip = set(exclude)
    root = psutil.PROCFS_PATH
    found: list[Consumer] = []
    unreadable = 0
    hidden = procfs_hides(root)
    try:
        pids = psutil.pids()
    except OSError:
        return Consumers((), 0, tuple(devices), hidden)
    for pid in sorted(pids):
        if pid in skip:
            continue
        try:
            held = _held(f"{root}/{pid}/fd", wanted)
        except PermissionError:
            unreadable += count_unreadable
            continue
        except OSError:  # gone, or a kernel thread without descriptors
            continue
        if held is None:
            continue
        consumer = _describe(pid, held, f"{root}/{pid}")
        if consumer is not None:
            found.append(consumer)
    return Consumers(tuple(found), unreadable, tuple(devices), hidden)


def _held(fd_dir: str, wanted: set[str]) -> str | None:
    """The first of `wanted` that a descriptor in fd_dir points to. PermissionError when
    a link may not be read (proc_fd_access_allowed: the ptrace check), which says
    nothing about what it points to."""
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except PermissionError:
            raise
        except OSError:
            continue  # closed meanwhile (ENOENT)
        if target in wanted:
            return target
    return None


def _describe(pid: int, device: str, proc_dir: str) -> Consumer | None:
    import psutil  # noqa: PLC0415

    p: psutil.Process
    try:
        p = psutil.Process(pid)
        name = p.name()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        name = ""
    try:
        exe = p.exe()
    except psutil.Error:
        exe = ""
    try:
        lib = mapped_libxenctrl(proc_dir)
        maps_read = True
    except OSError:
        lib, maps_read = None, False
    return Consumer(pid, name, exe, elf_class(f"{proc_dir}/exe"), device, lib, maps_read)


def mapped_libxenctrl(proc_dir: str) -> Library | None:
    """The libxenctrl a process maps (from PROC_DIR/maps), its release read from the
    file's SONAME (through PROC_DIR/root, the process's own view of the file system),
    else from its file name. OSError when the maps cannot be read."""
    with open(f"{proc_dir}/maps", encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        path = parts[5].removesuffix(" (deleted)")
        base = path.rsplit("/", 1)[-1]
        if not base.startswith("libxenctrl.so"):
            continue
        name = soname(Path(f"{proc_dir}/root{path}")) or soname(Path(path)) or base
        return Library(path, library_version(name) or library_version(base))
    return None


def procfs_hides(root: str) -> bool:
    """Whether the procfs at `root` hides processes this one may not ptrace-read
    (hidepid=invisible/2 or ptraceable/4, fs/proc/base.c has_pid_permissions) while
    this process lacks CAP_SYS_PTRACE, the capability that passes that check."""
    options = _proc_mount_options(root)
    if options is None:
        return False
    hidepid = next((o.split("=", 1)[1] for o in options if o.startswith("hidepid=")), "")
    if hidepid not in ("invisible", "2", "ptraceable", "4"):
        return False
    return not has_capability(CAP_SYS_PTRACE)


def _proc_mount_options(root: str) -> list[str] | None:
    """The super options of the proc mount at `root` (from /proc/self/mountinfo)."""
    try:
        with open(f"{root}/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) > 4 and fields[4] == root and right.startswith("proc "):
            return right.split()[2].split(",") if len(right.split()) > 2 else []
    return None


def has_capability(cap: int) -> bool:
    """Whether this process has `cap` in its effective set (/proc/self/status CapEff)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False

