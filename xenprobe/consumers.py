"""Consumers at risk: the other processes on the host that hold the privcmd device open
(qemu, xenstored, a toolstack, a monitoring agent...), and whether each is a 32-bit
program.

A 32-bit process calls privcmd through the kernel's compat path: the ioctl returns in a
32-bit register, so every hypercall result it reads is cut to 32 bits (sign-flipped above
2^31, truncated above 2^32), whatever the 64-bit layers below do. Those are the programs
that get the values xenprobe's `int32` and `uint32` risks describe.

psutil lists the processes and names them. It does not list device nodes among a
process's open files (open_files() keeps regular files only), so the descriptors are read
from /proc/PID/fd: each is a symlink whose target is the path the process opened. A
program's word size is the ELF class of /proc/PID/exe, which reads the running image
even when the file on disk was replaced. Everything honours psutil.PROCFS_PATH.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xenprobe.elf import elf_class

if TYPE_CHECKING:
    import psutil

# What /proc/PID/fd shows for the device: the pvops device node, and the xenfs file.
DEVICES = ("/dev/xen/privcmd", "/proc/xen/privcmd")
# On the mock host each process's privcmd is a memfd (native/mock/device.c).
MOCK_DEVICE = "/memfd:xenprobe-mock-privcmd (deleted)"


@dataclass(frozen=True)
class Consumer:
    pid: int
    name: str                 # the process name (comm), "" when it could not be read
    exe: str                  # the executable's path, "" when it could not be read
    bits: int | None          # 32 or 64 (ELF class of the running image), None: unknown
    device: str               # the path it holds open

    @property
    def compat(self) -> bool:
        """A 32-bit program: every result it reads from privcmd is cut to 32 bits."""
        return self.bits == 32

    def as_json(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "exe": self.exe, "bits": self.bits,
                "compat": self.compat, "device": self.device}


@dataclass(frozen=True)
class Consumers:
    found: tuple[Consumer, ...] = ()
    unreadable: int = 0       # processes whose descriptors could not be read (not root)
    devices: tuple[str, ...] = field(default=DEVICES)

    @property
    def compat(self) -> tuple[Consumer, ...]:
        return tuple(c for c in self.found if c.compat)

    def by_bits(self) -> dict[str, int]:
        """Processes per word size: "32", "64" and "unknown" (always all three keys)."""
        counts = {"32": 0, "64": 0, "unknown": 0}
        for c in self.found:
            counts[str(c.bits) if c.bits in (32, 64) else "unknown"] += 1
        return counts

    def as_json(self) -> dict[str, object]:
        return {"devices": list(self.devices), "unreadable_processes": self.unreadable,
                "processes": [c.as_json() for c in self.found]}


def devices_for(mock: bool) -> tuple[str, ...]:
    return (*DEVICES, MOCK_DEVICE) if mock else DEVICES


def scan(devices: Sequence[str] = DEVICES, *, exclude: Iterable[int] = ()) -> Consumers:
    """Every process (but those in `exclude`) holding one of `devices` open, lowest pid
    first. Processes that end while being read are skipped; those whose descriptors are
    not ours to read are counted in `unreadable`."""
    import psutil  # noqa: PLC0415 (only when looking: `check` starts faster)

    wanted = set(devices)
    skip = set(exclude)
    root = psutil.PROCFS_PATH
    found: list[Consumer] = []
    unreadable = 0
    try:
        pids = psutil.pids()
    except OSError:
        return Consumers((), 0, tuple(devices))
    for pid in sorted(pids):
        if pid in skip:
            continue
        try:
            held = _held(f"{root}/{pid}/fd", wanted)
        except PermissionError:
            unreadable += 1
            continue
        except OSError:  # gone, or a kernel thread without descriptors
            continue
        if held is None:
            continue
        consumer = _describe(pid, held, f"{root}/{pid}/exe")
        if consumer is not None:
            found.append(consumer)
    return Consumers(tuple(found), unreadable, tuple(devices))


def _held(fd_dir: str, wanted: set[str]) -> str | None:
    """The first of `wanted` that a descriptor in fd_dir points to."""
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target in wanted:
            return target
    return None


def _describe(pid: int, device: str, exe_link: str) -> Consumer | None:
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
    return Consumer(pid, name, exe, elf_class(exe_link), device)
