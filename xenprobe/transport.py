"""Thin shell over the native transport (native/transport): device, buffers, hypercalls."""

from __future__ import annotations

import errno as errnos
import os
from collections.abc import Sequence
from typing import Any

from xenprobe._transport import ffi, lib
from xenprobe.abi.hypercalls import MULTICALL_ENTRY_SIZE
from xenprobe.errors import CannotProbe, Refused
from xenprobe.reading import Reading, raw_result

_DENIALS = {
    1: "hypercall not on the read-only allow-list",
    2: "subop not on the read-only allow-list",
    3: "only by-value read-only ops may go inside a multicall",
    4: "multicall entry count out of range",
    5: "missing argument",
}

Args = tuple[int, int, int, int, int]


def refusal_reason(code: int) -> str:
    return _DENIALS.get(code, f"refused ({code})")


def args5(*args: int) -> Args:
    a = [*args, 0, 0, 0, 0, 0][:5]
    return (a[0], a[1], a[2], a[3], a[4])


class Buffer:
    """Locked, page-aligned memory a hypercall may point into."""

    def __init__(self, size: int) -> None:
        err = ffi.new("int *")
        ptr = lib.xp_alloc(size, err)
        if ptr == ffi.NULL:
            raise CannotProbe(
                f"cannot lock {size} bytes of hypercall buffer: {os.strerror(err[0])}",
                "raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit) or run as root")
        self.size = size
        self.ptr: Any = ptr
        self.view = ffi.buffer(ptr, size)
        self.address = int(ffi.cast("uintptr_t", ptr))

    def close(self) -> None:
        if self.ptr is not None:
            lib.xp_free(self.ptr, self.size)
            self.ptr = None

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Privcmd:
    """An open privcmd device. Every request passes the native allow-list first."""

    def __init__(self) -> None:
        err = ffi.new("int *")
        fd = lib.xp_open(err)
        if fd < 0:
            raise _open_error(err[0])
        self.fd = fd
        self._err = err
        self._ret = ffi.new("int *")
        self._lret = ffi.new("long *")
        self._args = ffi.new("uint64_t[5]")

    def close(self) -> None:
        if self.fd >= 0:
            lib.xp_close(self.fd)
            self.fd = -1

    def __enter__(self) -> Privcmd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refused(self, what: str) -> Refused:
        return Refused(f"{what}: {refusal_reason(self._err[0])}")

    def ioctl(self, op: int, args: Args) -> Reading:
        """glibc ioctl(): the int a tool sees, with errno when it is -1."""
        self._args[0:5] = args
        if lib.xp_hypercall_ioctl(self.fd, op, self._args, self._ret, self._err):
            raise self._refused(f"hypercall {op}/{args[0]}")
        return Reading(self._ret[0], self._err[0], 32)

    def syscall(self, op: int, args: Args) -> Reading:
        """The ioctl system call's own long return, before glibc narrows it to int."""
        self._args[0:5] = args
        if lib.xp_hypercall_syscall(self.fd, op, self._args, self._lret, self._err):
            raise self._refused(f"hypercall {op}/{args[0]}")
        return Reading(self._lret[0], self._err[0], 64)

    def many(self, calls: Sequence[tuple[int, Args]], *, syscall: bool) -> list[Reading]:
        """One ioctl per call, issued in a C loop: the ioctl (int) or syscall (long) layer
        for a whole sweep. Only by-value ops; the native side checks all before any."""
        n = len(calls)
        if n == 0:
            return []
        ops = ffi.new("uint64_t[]", [op for op, _ in calls])
        flat = ffi.new("uint64_t[]", [a for _, args in calls for a in args])
        rets = ffi.new("int64_t[]", n)
        errs = ffi.new("int[]", n)
        if lib.xp_hypercall_many(self.fd, n, ops, flat, int(syscall), rets, errs, self._err):
            raise self._refused("batched hypercalls")
        width = 64 if syscall else 32
        return [Reading(r, e, width) for r, e in zip(ffi.unpack(rets, n), ffi.unpack(errs, n),
                                                      strict=True)]

    def multicall(self, calls: Sequence[tuple[int, Args]]) -> list[Reading]:
        """Raw 64-bit results: each call becomes one multicall entry.

        Batches of at most XP_MULTICALL_MAX entries; one ioctl per batch.
        """
        out: list[Reading] = []
        limit = int(lib.XP_MULTICALL_MAX)
        for start in range(0, len(calls), limit):
            chunk = calls[start:start + limit]
            entries = ffi.new("xp_multicall_entry[]", len(chunk))
            for entry, (op, args) in zip(entries, chunk, strict=True):
                entry.op = op
                entry.args[0:5] = args
            # The hypervisor reads the entries: copy them into locked memory.
            with Buffer(len(chunk) * MULTICALL_ENTRY_SIZE) as buf:
                ffi.memmove(buf.ptr, entries, len(chunk) * MULTICALL_ENTRY_SIZE)
                locked = ffi.cast("xp_multicall_entry *", buf.ptr)
                if lib.xp_multicall(self.fd, locked, len(chunk), self._ret, self._err):
                    raise self._refused("multicall")
                if self._ret[0] != 0:
                    raise CannotProbe(
                        f"the multicall hypercall failed: {os.strerror(self._err[0])}",
                        "a PVH/HVM dom0 needs Xen 4.15.1 or later for multicalls")
                out.extend(raw_result(int(locked[i].result)) for i in range(len(chunk)))
        return out


def _open_error(err: int) -> CannotProbe:
    if err in (errnos.ENOENT, errnos.ENXIO, errnos.ENODEV):
        return CannotProbe(
            "no privcmd device (/dev/xen/privcmd, /proc/xen/privcmd): this is not a Xen "
            "dom0, or the xen-privcmd module is not loaded",
            "try `xenprobe check --mock` to run against the built-in mock host")
    if err in (errnos.EACCES, errnos.EPERM):
        return CannotProbe("permission denied opening /dev/xen/privcmd: xenprobe needs root",
                           "run it as root (sudo xenprobe check)")
    return CannotProbe(f"cannot open /dev/xen/privcmd: {os.strerror(err)}")
