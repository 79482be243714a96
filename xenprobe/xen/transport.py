# SPDX-License-Identifier: GPL-2.0-only
"""Thin shell over the native transport (native/transport): device, buffers, hypercalls."""

from __future__ import annotations

import errno as errnos
import os
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import Any, overload

from xenprobe._transport import ffi, lib
from xenprobe.support.errors import CannotProbe, Refused
from xenprobe.xen.reading import RETRYABLE, Reading, raw_result

_DENIALS = {
    1: "hypercall not on the read-only allow-list",
    2: "subop not on the read-only allow-list",
    3: "only by-value read-only ops may go inside a multicall",
    4: "multicall entry count out of range",
    5: "missing argument",
    6: "an argument points into the transport's private copies",
    7: "the hypervisor would write outside the caller's hypercall buffers",
}

Args = tuple[int, int, int, int, int]

NO_INDEX = (1 << 64) - 1  # xp_refusal(): the request itself, not an entry or call of it

# A request that failed with one of these is issued again, up to RETRIES more times:
# EINTR and EAGAIN say "no answer yet", not what the answer is, so every careful caller
# retries them (libxencall's own callers do). What is left after the last retry is the
# layer's reading. Every retry is counted in Privcmd.retries.
RETRIES = 3


def aliases(raw: int, err: int) -> bool:
    """Whether a valid raw result reads as -1 with this errno through the int paths:
    its low 32 bits, sign-extended, are -err while the hypervisor itself did not fail."""
    low = raw & 0xFFFFFFFF
    return raw != -err and (low ^ 0x80000000) - 0x80000000 == -err


def refusal_reason(code: int) -> str:
    return _DENIALS.get(code, f"refused ({code})")


def refusal_subject(what: str, detail: tuple[int, int, int | None]) -> str:
    """What a refusal was about, from xp_refusal(): the op and the subop the allow-list
    read (a sysctl/domctl's cmd, not the pointer to it), and which multicall entry or
    batch call. `what` names the request ("hypercall 35", "multicall")."""
    op, subop, index = detail
    if index is None:
        return f"hypercall {op}/{subop}"
    part = "entry" if what.startswith(("hypercall 13", "multicall")) else "call"
    return f"{what}, {part} {index}: {op}/{subop}"


def args5(*args: int) -> Args:
    a = [*args, 0, 0, 0, 0, 0][:5]
    return (a[0], a[1], a[2], a[3], a[4])


class Calls(Sequence[tuple[int, Args]]):
    """By-value hypercalls as the native side takes them: one array of ops and one of 5
    arguments per call, built once and handed to every batched path of a sweep (two
    multicall batches, the syscall and the ioctl loops) without a Python loop per call.
    Reads as a sequence of (op, args) too, like the lists the single-call paths take."""

    def __init__(self, ops: Sequence[int], flat_args: Sequence[int]) -> None:
        if len(flat_args) != 5 * len(ops):
            raise ValueError("5 arguments per call")
        self.n = len(ops)
        self.ops: Any = ffi.new("uint64_t[]", list(ops)) if ops else ffi.NULL
        self.args: Any = ffi.new("uint64_t[]", list(flat_args)) if ops else ffi.NULL

    @classmethod
    def of(cls, calls: Sequence[tuple[int, Args]]) -> Calls:
        if isinstance(calls, Calls):
            return calls
        return cls([op for op, _ in calls], [a for _, args in calls for a in args])

    def subset(self, indices: Sequence[int]) -> Calls:
        """The calls at these positions, in this order (a retry of a few probes)."""
        ops, args = self.ops, self.args
        return Calls([int(ops[i]) for i in indices],
                     [int(args[5 * i + k]) for i in indices for k in range(5)])

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> tuple[int, Args]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, Args]]: ...

    def __getitem__(self, index: int | slice) -> tuple[int, Args] | list[tuple[int, Args]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if not -self.n <= index < self.n:
            raise IndexError(index)
        i = index % self.n
        a = self.args
        return int(self.ops[i]), (int(a[5 * i]), int(a[5 * i + 1]), int(a[5 * i + 2]),
                                  int(a[5 * i + 3]), int(a[5 * i + 4]))


class Buffer:
    """Locked, page-aligned memory a hypercall may point into, owned by the process that
    made it. Its pages are not inherited (MADV_DONTFORK, as libxencall keeps them), so a
    forked child has none of them: there the Buffer's view and address raise, and
    closing or dropping it frees nothing, since the child may hold something else of its
    own at that address by then."""

    ptr: Any = None  # also when __init__ raised: nothing for close() to free

    def __init__(self, size: int) -> None:
        err = ffi.new("int *")
        ptr = lib.xp_alloc(size, err)
        if ptr == ffi.NULL:
            raise CannotProbe(
                f"cannot lock {size} bytes of hypercall buffer: {os.strerror(err[0])}",
                "raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit) or run as root")
        self.size = size
        self.pid = os.getpid()
        self.ptr = ptr
        self._view = ffi.buffer(ptr, size)
        self._address = int(ffi.cast("uintptr_t", ptr))

    def mine(self) -> bool:
        """Whether this process made the Buffer (and so has its pages)."""
        return self.pid == os.getpid()

    def _owned(self) -> None:
        if not self.mine():
            raise CannotProbe(
                f"a hypercall buffer of process {self.pid} used in its forked child "
                f"{os.getpid()}, which has none of its pages",
                "make hypercall buffers in the process that issues the hypercalls")

    @property
    def view(self) -> Any:
        self._owned()
        return self._view

    @property
    def address(self) -> int:
        self._owned()
        return self._address

    def close(self) -> None:
        if self.ptr is not None:
            if self.mine():
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
        self._detail = ffi.new("uint64_t[3]")
        # (path, reason) -> requests issued again: path ioctl, syscall or multicall (an
        # entry, or the whole multicall), reason the errno's name; host.py adds its own
        # re-reads of an invalid answer (path: the call, reason "invalid").
        self.retries: Counter[tuple[str, str]] = Counter()

    def close(self) -> None:
        if self.fd >= 0:
            lib.xp_close(self.fd)
            self.fd = -1

    def __enter__(self) -> Privcmd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _failed(self, rc: int, what: str) -> Refused | CannotProbe:
        """Why a native call that did not issue (rc XP_REFUSED or -1) did not."""
        if rc != lib.XP_REFUSED:
            return CannotProbe(
                f"{what}: cannot copy the request into locked memory: "
                f"{os.strerror(self._err[0])}",
                "raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit) or run as root")
        return Refused(f"{refusal_subject(what, self._refusal())}: "
                       f"{refusal_reason(self._err[0])}")

    def _refusal(self) -> tuple[int, int, int | None]:
        lib.xp_refusal(self._detail)
        index = int(self._detail[2])
        return int(self._detail[0]), int(self._detail[1]), None if index == NO_INDEX else index

    def ioctl(self, op: int, args: Args) -> Reading:
        """glibc ioctl(): the int a tool sees, with errno when it is -1."""
        self._args[0:5] = args
        for retry in range(RETRIES + 1):
            rc = lib.xp_hypercall_ioctl(self.fd, op, self._args, self._ret, self._err)
            if rc:
                raise self._failed(rc, f"hypercall {op}")
            if self._ret[0] != -1 or not self._retry("ioctl", self._err[0], retry):
                break
        return Reading(self._ret[0], self._err[0], 32)

    def syscall(self, op: int, args: Args) -> Reading:
        """The ioctl system call's own long return, before glibc narrows it to int."""
        self._args[0:5] = args
        for retry in range(RETRIES + 1):
            rc = lib.xp_hypercall_syscall(self.fd, op, self._args, self._lret, self._err)
            if rc:
                raise self._failed(rc, f"hypercall {op}")
            if self._lret[0] != -1 or not self._retry("syscall", self._err[0], retry):
                break
        return Reading(self._lret[0], self._err[0], 64)

    def _retry(self, path: str, err: int, done: int) -> bool:
        """Whether a request that failed with `err` after `done` retries goes again
        (and if so, it is counted)."""
        if err not in RETRYABLE or done == RETRIES:
            return False
        self.retries[(path, errnos.errorcode.get(err, str(err)))] += 1
        return True

    def take_retries(self) -> Counter[tuple[str, str]]:
        """The retries counted since the last call, and start counting afresh."""
        taken, self.retries = self.retries, Counter()
        return taken

    def _retry_many(self, calls: Calls, values: array[int], errs: array[int],
                    syscall: bool, raw: Sequence[int] | None) -> None:
        """many_values' calls that failed with a retryable errno, issued again in place.
        Not those whose raw result is a value that the int path turns into exactly that
        -1/errno: that is an alias of the value, which no retry changes."""
        path = "syscall" if syscall else "ioctl"
        for retry in range(RETRIES):
            again = [i for i, e in enumerate(errs) if e in RETRYABLE and values[i] == -1
                     and not (raw is not None and aliases(raw[i], e))]
            if not again:
                return
            for i in again:
                self._retry(path, errs[i], retry)
            v, e = self.many_values(calls.subset(again), syscall=syscall, retry=False)
            for j, i in enumerate(again):
                values[i], errs[i] = v[j], e[j]

    def _retry_entries(self, calls: Calls, values: array[int]) -> None:
        """Multicall entries whose result is -EINTR or -EAGAIN, issued again in place."""
        for retry in range(RETRIES):
            again = [i for i, v in enumerate(values) if -v in RETRYABLE]
            if not again:
                return
            for i in again:
                self._retry("multicall", -values[i], retry)
            for j, v in enumerate(self.multicall_values(calls.subset(again), retry=False)):
                values[again[j]] = v

    def many(self, calls: Sequence[tuple[int, Args]], *, syscall: bool) -> list[Reading]:
        """One ioctl per call, issued in a C loop: the ioctl (int) or syscall (long) layer
        for a whole sweep. Only by-value ops; the native side checks all before any."""
        values, errs = self.many_values(Calls.of(calls), syscall=syscall)
        width = 64 if syscall else 32
        return [Reading(r, e, width) for r, e in zip(values, errs, strict=True)]

    def many_values(self, calls: Calls, *, syscall: bool, retry: bool = True,
                    raw: Sequence[int] | None = None) -> tuple[array[int], array[int]]:
        """`many` as two columns, the returned values and the errnos (0: none), without a
        Reading per call: what a sweep's bulk comparison reads. Machine-integer arrays
        copied straight from the native ones, so 30,000 calls make no Python int.
        raw: the same calls' raw (multicall) results, when known, so that an aliased
        value is not mistaken for a transient failure (see _retry_many)."""
        n = len(calls)
        values, errnos = array("q"), array("i")
        if n == 0:
            return values, errnos
        rets = ffi.new("int64_t[]", n)
        errs = ffi.new("int[]", n)
        rc = lib.xp_hypercall_many(self.fd, n, calls.ops, calls.args, int(syscall), rets,
                                   errs, self._err)
        if rc:
            raise self._failed(rc, "batched hypercalls")
        values.frombytes(ffi.buffer(rets))
        errnos.frombytes(ffi.buffer(errs))
        if retry:
            self._retry_many(calls, values, errnos, syscall, raw)
        return values, errnos

    def multicall(self, calls: Sequence[tuple[int, Args]]) -> list[Reading]:
        """Raw 64-bit results: each call becomes one multicall entry.

        Batches of at most XP_MULTICALL_MAX entries; one ioctl per batch.
        """
        return [raw_result(v) for v in self.multicall_values(Calls.of(calls))]

    def multicall_values(self, calls: Calls, *, retry: bool = True) -> array[int]:
        """`multicall` as the entries' signed 64-bit results (-errno in [-4095, -1] is a
        failure, see reading.raw_result). The native side builds the entries in locked
        memory, checks every one, and issues one multicall per XP_MULTICALL_MAX."""
        n = len(calls)
        if n == 0:
            return array("q")
        results = ffi.new("int64_t[]", n)
        rc = lib.xp_multicall_many(self.fd, n, calls.ops, calls.args, results, self._ret,
                                   self._err)
        for again in range(RETRIES):  # the whole multicall failed with EINTR or EAGAIN
            if rc or self._ret[0] != -1 or not self._retry("multicall", self._err[0], again):
                break
            rc = lib.xp_multicall_many(self.fd, n, calls.ops, calls.args, results,
                                       self._ret, self._err)
        if rc:
            raise self._failed(rc, "multicall")
        if self._ret[0] != 0 and self._err[0] == errnos.ENOSYS:
            # The hypervisor has no multicall for this caller: a PVH dom0 before
            # 4.15.1 (x86/hvm/hypercall.c@RELEASE-4.14.6:220-224). The sweep goes on
            # without the raw layer (xenprobe.layers.raw_absent).
            raise NoMulticall(
                "the multicall hypercall failed: ENOSYS (Function not implemented)",
                "a PVH/HVM dom0 needs Xen 4.15.1 or later for multicalls")
        if self._ret[0] != 0:
            raise CannotProbe(
                f"the multicall hypercall failed: {os.strerror(self._err[0])}",
                "a PVH/HVM dom0 needs Xen 4.15.1 or later for multicalls")
        values = array("q")
        values.frombytes(ffi.buffer(results))
        if retry:
            self._retry_entries(calls, values)
        return values


class NoMulticall(CannotProbe):
    """The multicall hypercall answered ENOSYS: there is no raw layer on this host."""


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
