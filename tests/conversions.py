# SPDX-License-Identifier: GPL-2.0-only
"""The conversions each layer applies to a hypervisor result, written from the facts in
shared/reference/xen-abi.md 1.3 and 2.3 (not from xenprobe's code), for tests to build
readings with."""

from __future__ import annotations

from xenprobe.xen.reading import Reading

U32, U64 = 1 << 32, 1 << 64
INT32_MAX, INT32_MIN = (1 << 31) - 1, -(1 << 31)


def s64(u: int) -> int:
    u %= U64
    return u - U64 if u >= 1 << 63 else u


def s32(u: int) -> int:
    u %= U32
    return u - U32 if u >= 1 << 31 else u


def pvops_kernel(result: int) -> int:
    """privcmd's `int ret` and the ioctl syscall's `int error`: sign-extended 32 bits."""
    return s32(result)


def xenlinux_kernel(result: int) -> int:
    """A driver that passes the hypervisor's long through."""
    return s64(result)


def glibc_ioctl(kernel_return: int) -> Reading:
    """glibc's int ioctl(): [-4095,-1] -> -1/errno, else the low 32 bits as int."""
    if -4095 <= kernel_return <= -1:
        return Reading(-1, -kernel_return, 32)
    return Reading(s32(kernel_return), 0, 32)


def glibc_syscall(kernel_return: int) -> Reading:
    """glibc's long syscall(): the same error rule, 64 bits kept."""
    if -4095 <= kernel_return <= -1:
        return Reading(-1, -kernel_return, 64)
    return Reading(kernel_return, 0, 64)


def compat_clamp(result: int) -> int:
    """compat_memory_op: rc above INT_MAX becomes INT_MAX, below INT_MIN becomes INT_MIN."""
    v = s64(result)
    return INT32_MAX if v > INT32_MAX else INT32_MIN if v < INT32_MIN else v
