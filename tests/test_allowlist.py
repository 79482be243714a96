# SPDX-License-Identifier: GPL-2.0-only
"""The read-only allow-list in native code, checked directly (no device needed).

The end-to-end proof, that refused requests never reach the device, is in
test_readonly.py against the mock's request log."""

from __future__ import annotations

import struct

import pytest
from xenprobe._transport import ffi, lib

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc

ALLOWED_MEMORY_OPS = {2, 3, 4, 14, 18, 19}
# get_debugreg(DR6), hypfs get_version, VCPUOP_is_up, KEXEC_CMD_kexec_status
ALLOWED_CENSUS = {(9, 6), (42, 0), (24, 3), (37, 6)}
ALLOWED_XEN_VERSION = set(range(15))
BY_STRUCT = {hc.MULTICALL, hc.SYSCTL, hc.DOMCTL, co.PLATFORM_OP}  # checked on a private copy


def check(op: int, arg0: int) -> int:
    return int(lib.xp_check(op, ffi.new("uint64_t[5]", [arg0, 0, 0, 0, 0])))


def entry(op: int, arg0: int) -> int:
    e = ffi.new("xp_multicall_entry *")
    e.op = op
    e.args[0] = arg0
    return int(lib.xp_check_entry(e))


@pytest.mark.parametrize("op", range(64))
def test_every_hypercall_number(op: int) -> None:
    for arg0 in range(64):
        by_value = ((op == hc.MEMORY_OP and arg0 in ALLOWED_MEMORY_OPS)
                    or (op == hc.XEN_VERSION and arg0 in ALLOWED_XEN_VERSION)
                    or (op, arg0) in ALLOWED_CENSUS)
        allowed = by_value or op in BY_STRUCT
        assert (check(op, arg0) == 0) is allowed, (op, arg0)
        # Inside a multicall only the by-value read-only ops are allowed, and platform_op,
        # whose struct xp_issue copies and judges like a single call's.
        assert (entry(op, arg0) == 0) is (by_value or op == co.PLATFORM_OP), (op, arg0)


def test_memory_op_continuation_bits_are_another_request() -> None:
    """Every subop 0-63 with a start extent in cmd >> 6, each extent bit on its own and
    all of them: refused, alone and inside a multicall."""
    for subop in range(64):
        for extent in [*(1 << bit for bit in range(58)), (1 << 58) - 1]:
            cmd = subop | extent << 6
            assert check(hc.MEMORY_OP, cmd) != 0, hex(cmd)
            assert entry(hc.MEMORY_OP, cmd) != 0, hex(cmd)


def test_sysctl_and_domctl_commands() -> None:
    """Every command below 2^16 and the top of the 32-bit field."""
    for cmd in [*range(1 << 16), *range((1 << 32) - 256, 1 << 32), 1 << 31]:
        # 27, livepatch_op, passes this first check; its own cmd is checked next.
        assert (lib.xp_check_sysctl_cmd(cmd) == 0) is (cmd in {3, 6, 27}), cmd
        assert (lib.xp_check_domctl_cmd(cmd) == 0) is (cmd == 5), cmd


def sysctl_check(words: bytes, size: int = hc.SYSCTL_SIZE) -> int:
    buf = ffi.new("uint8_t[]", max(size, len(words), 1))
    ffi.memmove(buf, words, len(words))
    return int(lib.xp_check_sysctl(buf, size))


def test_sysctl_livepatch_op_is_allowed_with_list_inside_only() -> None:
    """struct xen_sysctl { cmd 27, interface_version, union { livepatch_op { cmd, pad,
    ... } } }: every inner cmd below 2^16 and the top of the 32-bit field; only LIST (2)
    passes. UPLOAD (0) and ACTION (3) change the hypervisor; GET (1) returns no count."""
    for inner in [*range(1 << 16), *range((1 << 32) - 256, 1 << 32), 1 << 31]:
        words = struct.pack("<IIII", 27, 0x15, inner, 0)
        assert (sysctl_check(words) == 0) is (inner == 2), inner
    # The rest of the struct (interface version, pad, idx, nr, handles) is Xen's to judge.
    assert sysctl_check(struct.pack("<IIIIIIII", 27, 0, 2, 7, 1, 2, 1024, 9)) == 0
    # Other sysctl cmds are judged by their cmd alone; a livepatch_op cut short is not
    # allowed; 2 at offset 8 of another cmd's struct allows nothing.
    assert sysctl_check(struct.pack("<IIII", 3, 0x15, 0, 0)) == 0
    assert sysctl_check(struct.pack("<IIII", 2, 0x15, 2, 0)) != 0
    assert sysctl_check(struct.pack("<II", 27, 0x15), 8) != 0
    assert sysctl_check(b"", 0) != 0


def test_xen_version_subops_past_the_last() -> None:
    for subop in [*range(15, 1 << 12), (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
                  (1 << 64) - 1]:
        assert check(hc.XEN_VERSION, subop) != 0, subop
        assert entry(hc.XEN_VERSION, subop) != 0, subop


def test_get_debugreg_dr6_only_and_hypfs_get_version_only() -> None:
    """get_debugreg(int reg) and hypfs_op(unsigned int cmd) take the low 32 bits; the
    list compares all 64, so 6 or 0 with any high bit set is another request."""
    for arg0 in [*range(1 << 12), 1 << 31, (1 << 32) | 6, (1 << 32), (1 << 64) - 1,
                 (1 << 63) | 6]:
        for op, allowed in ((9, 6), (42, 0)):
            expect = arg0 == allowed
            assert (check(op, arg0) == 0) is expect, (op, arg0)
            assert (entry(op, arg0) == 0) is expect, (op, arg0)


def test_vcpu_is_up_only_and_kexec_status_only() -> None:
    """vcpu_op(int cmd, ...) takes the low 32 bits, kexec_op(unsigned long op, ...) all
    64 (include/hypercall-defs.c@4.17:113,185): either way the list compares all 64, so
    3 or 6 with a high bit set is refused. VCPUOP_down (2), VCPUOP_up (1), KEXEC_CMD_kexec
    (0), kexec_load (4) and kexec_unload (5) are among the refused."""
    for arg0 in [*range(1 << 12), 1 << 31, (1 << 32) | 3, (1 << 32) | 6, (1 << 64) - 1,
                 (1 << 63) | 3, (1 << 63) | 6]:
        for op, allowed in ((24, 3), (37, 6)):
            expect = arg0 == allowed
            assert (check(op, arg0) == 0) is expect, (op, arg0)
            assert (entry(op, arg0) == 0) is expect, (op, arg0)


def test_platform_op_commands() -> None:
    """resource_op and get_dom0_console only: XENPF_cpu_hotadd (census S5) and every other
    command below 2^16 and at the top of the 32-bit field are refused."""
    for cmd in [*range(1 << 16), *range((1 << 32) - 256, 1 << 32), 1 << 31]:
        expect = cmd in {co.XENPF_resource_op, co.XENPF_get_dom0_console}
        assert (lib.xp_check_platform_cmd(cmd) == 0) is expect, cmd
    assert lib.xp_check_platform_cmd(co.XENPF_cpu_hotadd) != 0


def test_resource_op_entries_read_msrs_only() -> None:
    """1 to RESOURCE_ACCESS_MAX_ENTRIES entries, each XEN_RESOURCE_OP_MSR_READ; an
    MSR_WRITE (census S6) or any other cmd at any position refuses the whole op."""
    for n in [0, *range(co.RESOURCE_ACCESS_MAX_ENTRIES + 1, 300), (1 << 32) - 1]:
        assert lib.xp_check_resource_count(n) != 0, n
    for n in range(1, co.RESOURCE_ACCESS_MAX_ENTRIES + 1):
        assert lib.xp_check_resource_count(n) == 0, n
        entries = ffi.new("xp_resource_entry[]", n)
        assert lib.xp_check_resource_entries(entries, n) == 0
        for at in range(n):
            for cmd in [co.XEN_RESOURCE_OP_MSR_WRITE, 2, 0xFF, 1 << 31, (1 << 32) - 1]:
                entries[at].cmd = cmd
                assert lib.xp_check_resource_entries(entries, n) != 0, (n, at, cmd)
            entries[at].cmd = co.XEN_RESOURCE_OP_MSR_READ
