# SPDX-License-Identifier: GPL-2.0-only
"""Independent minimal privcmd reader (plain ctypes; imports nothing from xenprobe).

Run as root inside a Xen dom0; it only issues read-only hypercalls.  The real-Xen tests
compare xenprobe's reports against what this prints::

    python3 tests/realxen/reader.py            # or: python3 -m tests.realxen.reader
    python3 tests/realxen/reader.py --sysctl-version 0x15 --domctl-version 0x15

    python3 tests/realxen/reader.py --probes-from check.json   # + what xenprobe probed

Output: one JSON object (see ``read_all``).  Hypercall argument buffers are page-aligned
anonymous memory mapped with MAP_LOCKED, as libxencall does without /dev/xen/hypercall:
Xen reads them through the guest's page tables, so they must be present and stay so.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import struct
import sys
from typing import Any

PRIVCMD = "/dev/xen/privcmd"
IOCTL_PRIVCMD_HYPERCALL = 0x00305000  # _IOC(_IOC_NONE, 'P', 0, 48)

HYPERVISOR_memory_op = 12
HYPERVISOR_multicall = 13
HYPERVISOR_xen_version = 17
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36

XENVER_version = 0
XENVER_extraversion = 1
XENVER_EXTRAVERSION_LEN = 16
XENMEM_maximum_ram_page = 2
XENMEM_current_reservation = 3
XENMEM_maximum_reservation = 4
XENMEM_maximum_gpfn = 14
# The census's other read-only paths (xen/include/public/{xen,version,memory,hypfs,
# vcpu,kexec}.h).
HYPERVISOR_get_debugreg = 9
HYPERVISOR_vcpu_op = 24
HYPERVISOR_kexec_op = 37
HYPERVISOR_hypfs_op = 42
VCPUOP_is_up = 3
KEXEC_CMD_kexec_status = 6
KEXEC_TYPE_DEFAULT, KEXEC_TYPE_CRASH = 0, 1
XENVER_capabilities, XENVER_changeset, XENVER_commandline = 3, 4, 9
XENVER_TEXT_LEN = {XENVER_capabilities: 1024, XENVER_changeset: 64, XENVER_commandline: 1024}
# platform_op (xen/include/public/platform.h): struct xen_platform_op is cmd,
# interface_version and a 128-byte union; resource_op's union member is nr_entries, cpu
# and a handle to 24-byte entries {cmd, rsvd, idx, val}. One MSR_READ of MSR_IA32_TSC
# (0x10) on CPU 0, which Xen lets every dom0 read.
HYPERVISOR_platform_op = 7
XENPF_INTERFACE_VERSION = 0x03000001
XENPF_resource_op, XENPF_get_dom0_console = 61, 64
XEN_RESOURCE_OP_MSR_READ, MSR_IA32_TSC = 0, 0x10
XEN_SYSCTL_physinfo = 3
XEN_SYSCTL_getdomaininfolist = 6
# sysctl livepatch_op and its own cmd LIST (xen/include/public/sysctl.h, 4.13-4.22).
XEN_SYSCTL_livepatch_op = 27
XEN_SYSCTL_LIVEPATCH_LIST = 2
XEN_DOMCTL_getdomaininfo = 5

DOMID_SELF = 0x7FF0
DOMID_FIRST_RESERVED = 0x7FF0
NO_SUCH_DOMID = 0x7000  # below the reserved ids, never used by a test dom0
PAGE = 4096
MULTICALL_ENTRY_SIZE = 64  # op, result, args[6]: all 64-bit
SYSCTL_SIZE = 136  # cmd u32, interface_version u32, union[128]
DOMCTL_SIZE = 144  # cmd, interface_version, domain u16 + pad, union at 16 [128]

# Candidate interface versions, most likely first (4.17-4.20 use 0x15 / 0x15-0x17).
SYSCTL_VERSIONS = (0x15, 0x16, 0x14, 0x13, 0x12, 0x11, 0x10)
DOMCTL_VERSIONS = (0x15, 0x16, 0x17, 0x18, 0x14, 0x13, 0x12, 0x11, 0x10)

PROT_READ, PROT_WRITE = 0x1, 0x2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_LOCKED = 0x02, 0x20, 0x2000  # x86-64 values
MAP_FAILED = ctypes.c_void_p(-1).value
EACCES = 13
SYS_ioctl = 16  # x86-64
GETDOMAININFO_STABLE = 96  # bytes of xen_domctl_getdomaininfo decoded (see getdomaininfo)

# Each quantity xenprobe probes: (hypercall, cmd, takes a domid).  xen_version's cmd
# XENVER_version takes no argument; the memory_op ones a pointer to a domid_t.  The
# subjects of VCPU_ARG and KEXEC_TYPE take another argument (below).
QUANTITIES: dict[str, tuple[int, int, bool]] = {
    "xen_version": (HYPERVISOR_xen_version, XENVER_version, False),
    "maximum_ram_page": (HYPERVISOR_memory_op, XENMEM_maximum_ram_page, False),
    "current_reservation": (HYPERVISOR_memory_op, XENMEM_current_reservation, True),
    "maximum_reservation": (HYPERVISOR_memory_op, XENMEM_maximum_reservation, True),
    "maximum_gpfn": (HYPERVISOR_memory_op, XENMEM_maximum_gpfn, True),
    # By value, NULL argument: the length query of build_id (10) and the *2 subops.
    "xen_pagesize": (HYPERVISOR_xen_version, 7, False),
    "build_id_size": (HYPERVISOR_xen_version, 10, False),
    "extraversion_len": (HYPERVISOR_xen_version, 11, False),
    "capabilities_len": (HYPERVISOR_xen_version, 12, False),
    "changeset_len": (HYPERVISOR_xen_version, 13, False),
    "commandline_len": (HYPERVISOR_xen_version, 14, False),
    "debug_register_6": (HYPERVISOR_get_debugreg, 6, False),
    "sharing_freed_pages": (HYPERVISOR_memory_op, 18, False),
    "sharing_shared_pages": (HYPERVISOR_memory_op, 19, False),
    "hypfs_version": (HYPERVISOR_hypfs_op, 0, False),
    "vcpu_is_up": (HYPERVISOR_vcpu_op, VCPUOP_is_up, False),
    "kexec_status_default": (HYPERVISOR_kexec_op, KEXEC_CMD_kexec_status, False),
    "kexec_status_crash": (HYPERVISOR_kexec_op, KEXEC_CMD_kexec_status, False),
    # arg0 points to a struct xen_platform_op (PLATFORM_CMDS).
    "dom0_console_size": (HYPERVISOR_platform_op, XENPF_get_dom0_console, False),
    "resource_op_done": (HYPERVISOR_platform_op, XENPF_resource_op, False),
}
PLATFORM_CMDS = {XENPF_get_dom0_console, XENPF_resource_op}
# vcpu_op(VCPUOP_is_up, vcpuid, NULL): the vcpuid by value in the second argument.
VCPU_ARG = ("vcpu_is_up",)
# kexec_op(KEXEC_CMD_kexec_status, &status): struct xen_kexec_status { uint8_t type; }.
KEXEC_TYPE = {"kexec_status_default": KEXEC_TYPE_DEFAULT,
              "kexec_status_crash": KEXEC_TYPE_CRASH}
# Quantities whose request is a sysctl struct (never in a multicall): read by
# read_struct_probe, with no multicall reading.
STRUCT_QUANTITIES = ("livepatch_listed",)


def _load_libc() -> ctypes.CDLL:
    # The global scope first: it is glibc in a real dom0, and an LD_PRELOADed mock host
    # (native/mock) comes before it there, so the reader runs on the mock as well
    # (CDLL("libc.so.6").ioctl would bypass the preload).  Never find_library(): it runs
    # ldconfig, which takes >1 s in a TCG dom0.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if hasattr(libc, "ioctl") and hasattr(libc, "mmap"):
            return libc
    except OSError:
        pass
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_libc = _load_libc()
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.ioctl.restype = ctypes.c_int  # glibc's ioctl() returns int: that is the point
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
# syscall(2) returns the kernel's long (glibc maps [-4095, -1] to -1 and errno).
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_ulong, ctypes.c_void_p]


class PrivcmdHypercall(ctypes.Structure):
    _fields_ = [("op", ctypes.c_uint64), ("arg", ctypes.c_uint64 * 5)]


class HypercallBuffer:
    """Page-aligned, locked anonymous memory for hypercall arguments."""

    def __init__(self, pages: int = 1) -> None:
        self.size = pages * PAGE
        addr = _libc.mmap(
            None, self.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0
        )
        if addr in (None, MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"mmap(MAP_LOCKED): {os.strerror(err)}")
        self.addr: int = addr

    def write(self, offset: int, data: bytes) -> None:
        assert offset >= 0 and offset + len(data) <= self.size
        ctypes.memmove(self.addr + offset, data, len(data))

    def read(self, offset: int, length: int) -> bytes:
        assert offset >= 0 and offset + length <= self.size
        return ctypes.string_at(self.addr + offset, length)

    def close(self) -> None:
        if self.addr:
            _libc.munmap(self.addr, self.size)
            self.addr = 0

    def __enter__(self) -> HypercallBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_fd: int | None = None


def privcmd_fd() -> int:
    global _fd  # noqa: PLW0603 - one descriptor per process, like libxencall
    if _fd is None:
        _fd = os.open(PRIVCMD, os.O_RDWR | os.O_CLOEXEC)
    return _fd


def hypercall(op: int, *args: int) -> tuple[int, int]:
    """IOCTL_PRIVCMD_HYPERCALL; returns (ioctl's int return, errno or 0)."""
    call = PrivcmdHypercall(op, (ctypes.c_uint64 * 5)(*args))
    ctypes.set_errno(0)
    ret = _libc.ioctl(privcmd_fd(), IOCTL_PRIVCMD_HYPERCALL, ctypes.byref(call))
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def hypercall_syscall(op: int, *args: int) -> tuple[int, int]:
    """The same ioctl through syscall(SYS_ioctl): the kernel's long return, and errno."""
    call = PrivcmdHypercall(op, (ctypes.c_uint64 * 5)(*args))
    ctypes.set_errno(0)
    ret = _libc.syscall(SYS_ioctl, privcmd_fd(), IOCTL_PRIVCMD_HYPERCALL, ctypes.byref(call))
    return ret, (ctypes.get_errno() if ret == -1 else 0)


def _check(ret: int, err: int, what: str) -> int:
    if ret == -1:
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def xen_version() -> int:
    """XENVER_version: (major << 16) | minor."""
    return _check(*hypercall(HYPERVISOR_xen_version, XENVER_version, 0), "xen_version")


def memory_op_ioctl(subop: int, domid: int | None) -> tuple[int, int]:
    """memory_op through the plain ioctl: (int return, errno).  domid None = NULL arg."""
    with HypercallBuffer() as buf:
        arg = 0
        if domid is not None:
            buf.write(0, struct.pack("<H", domid))  # struct xen_memory_domain / domid_t
            arg = buf.addr
        return hypercall(HYPERVISOR_memory_op, subop, arg)


def _args(buf: HypercallBuffer, at: int, op: int, cmd: int, domid: int | None,
          vcpu: int | None = None, kexec_type: int | None = None) -> tuple[int, int]:
    """arg0 and arg1 of one request, its memory written into buf at `at`: (cmd, &domid),
    (cmd, vcpuid), (cmd, &kexec_type) or (cmd, NULL); for platform_op
    (&struct xen_platform_op, 0)."""
    if op == HYPERVISOR_platform_op and cmd in PLATFORM_CMDS:
        entries = buf.addr + at + 256
        buf.write(at, struct.pack("<IIIIQ", cmd, XENPF_INTERFACE_VERSION,
                                  1 if cmd == XENPF_resource_op else 0, 0,
                                  entries if cmd == XENPF_resource_op else 0).ljust(136, b"\0"))
        buf.write(at + 256, struct.pack("<IIQQ", XEN_RESOURCE_OP_MSR_READ, 0, MSR_IA32_TSC, 0))
        return buf.addr + at, 0
    if vcpu is not None:
        return cmd, vcpu
    if kexec_type is not None:
        buf.write(at, bytes([kexec_type]))
        return cmd, buf.addr + at
    if domid is None:
        return cmd, 0
    buf.write(at, struct.pack("<H", domid))
    return cmd, buf.addr + at


def multicall_one(op: int, cmd: int, domid: int | None, vcpu: int | None = None,
                  kexec_type: int | None = None) -> int:
    """op(cmd, &domid) in a one-entry multicall (or the other shapes of _args): the raw
    signed 64-bit result."""
    with HypercallBuffer() as buf:
        arg0, arg1 = _args(buf, 1024, op, cmd, domid, vcpu, kexec_type)
        entry = struct.pack("<8Q", op, 0, arg0, arg1, 0, 0, 0, 0)
        buf.write(0, entry)
        ret, err = hypercall(HYPERVISOR_multicall, buf.addr, 1)
        _check(ret, err, "multicall")
        (result,) = struct.unpack("<q", buf.read(8, 8))  # entry.result at offset 8
        return int(result)


def memory_op_multicall(subop: int, domid: int | None) -> int:
    """memory_op in a one-entry multicall: the raw signed 64-bit result (-errno on error)."""
    return multicall_one(HYPERVISOR_memory_op, subop, domid)


def read_probe(quantity: str, subject: int | None) -> dict[str, Any]:
    """One quantity for one subject through every path: the raw 64-bit result (a
    multicall, read before and after the others), glibc's int ioctl() and the kernel's
    long (syscall(SYS_ioctl)).  The subject is a domid, or for vcpu_is_up a vcpuid."""
    op, cmd, per_domain = QUANTITIES[quantity]
    vcpu = subject if quantity in VCPU_ARG else None
    domid = None if quantity in VCPU_ARG else subject
    if per_domain != (domid is not None) or (quantity in VCPU_ARG) != (vcpu is not None):
        raise ValueError(f"{quantity}: subject {subject} given wrongly")
    kexec_type = KEXEC_TYPE.get(quantity)

    def plain(call: Any) -> dict[str, int]:
        with HypercallBuffer() as buf:
            ret, err = call(op, *_args(buf, 0, op, cmd, domid, vcpu, kexec_type))
            return {"ret": ret, "errno": err}

    before = _guard(multicall_one, op, cmd, domid, vcpu, kexec_type)
    ioctl = plain(hypercall)
    syscall = plain(hypercall_syscall)
    after = _guard(multicall_one, op, cmd, domid, vcpu, kexec_type)
    return {"quantity": quantity, "domid": domid, "vcpu": vcpu, "multicall": before,
            "multicall_after": after, "ioctl": ioctl, "syscall": syscall}


def livepatch_list(version: int, call: Any = None) -> dict[str, int]:
    """sysctl livepatch_op LIST asking for no entries (idx 0, nr 0, NULL handles): the
    return, errno, and what Xen wrote back into the struct (nr: payloads left, all of
    them; version: the list's stamp, 1 until a payload is uploaded)."""
    with HypercallBuffer() as buf:
        buf.write(0, struct.pack("<IIII", XEN_SYSCTL_livepatch_op, version,
                                 XEN_SYSCTL_LIVEPATCH_LIST, 0).ljust(SYSCTL_SIZE, b"\0"))
        ret, err = (call or hypercall)(HYPERVISOR_sysctl, buf.addr)
        stamp, _, left, _ = struct.unpack("<IIII", buf.read(16, 16))
        return {"ret": ret, "errno": err, "nr": left, "version": stamp}


def read_struct_probe(quantity: str, sysctl_version: int) -> dict[str, Any]:
    """A STRUCT_QUANTITIES probe through glibc's ioctl and the ioctl system call; no
    multicall (None), as a sysctl cannot be batched."""
    if quantity not in STRUCT_QUANTITIES:
        raise ValueError(quantity)
    ioctl = livepatch_list(sysctl_version)
    syscall = livepatch_list(sysctl_version, hypercall_syscall)
    return {"quantity": quantity, "domid": None, "multicall": None,
            "multicall_after": None, "ioctl": {"ret": ioctl["ret"], "errno": ioctl["errno"]},
            "syscall": {"ret": syscall["ret"], "errno": syscall["errno"]}}


def xen_extraversion() -> str:
    with HypercallBuffer() as buf:
        _check(*hypercall(HYPERVISOR_xen_version, XENVER_extraversion, buf.addr),
               "xen_version extraversion")
        return buf.read(0, XENVER_EXTRAVERSION_LEN).split(b"\0", 1)[0].decode("ascii", "replace")


def xen_text(cmd: int) -> str:
    """A fixed-size xen_version string (capabilities, changeset, commandline)."""
    with HypercallBuffer() as buf:
        _check(*hypercall(HYPERVISOR_xen_version, cmd, buf.addr), f"xen_version {cmd}")
        raw = buf.read(0, XENVER_TEXT_LEN[cmd]).split(b"\0", 1)[0]
        return raw.decode("ascii", "replace")


def sysctl_raw(cmd: int, version: int, payload: bytes = b"") -> tuple[int, int, bytes]:
    """One sysctl; returns (ret, errno, the 128-byte union after the call)."""
    with HypercallBuffer() as buf:
        buf.write(0, struct.pack("<II", cmd, version) + payload.ljust(128, b"\0"))
        ret, err = hypercall(HYPERVISOR_sysctl, buf.addr)
        return ret, err, buf.read(8, 128)


def detect_sysctl_version(candidates: tuple[int, ...] = SYSCTL_VERSIONS) -> int:
    """First interface version that physinfo does not reject with EACCES."""
    for v in candidates:
        ret, err, _ = sysctl_raw(XEN_SYSCTL_physinfo, v)
        if not (ret == -1 and err == EACCES):
            return v
    raise OSError(EACCES, f"no sysctl interface version in {[hex(v) for v in candidates]}")


def physinfo(sysctl_interface_version: int, legacy_layout: bool = False) -> dict[str, int]:
    """XEN_SYSCTL_physinfo.  legacy_layout selects the 4.10-4.16 offsets (no arch_caps)."""
    ret, err, u = sysctl_raw(XEN_SYSCTL_physinfo, sysctl_interface_version)
    _check(ret, err, "sysctl physinfo")
    nr_cpus, max_cpu_id, nr_nodes = struct.unpack_from("<III", u, 8)
    capabilities = struct.unpack_from("<I", u, 28)[0]
    if legacy_layout:
        total, free, _scrub, outstanding, max_mfn = struct.unpack_from("<5Q", u, 32)
        arch_caps = None
    else:
        arch_caps = struct.unpack_from("<I", u, 32)[0]
        total, free, _scrub, outstanding, max_mfn = struct.unpack_from("<5Q", u, 40)
    out = {
        "nr_cpus": nr_cpus,
        "max_cpu_id": max_cpu_id,
        "nr_nodes": nr_nodes,
        "capabilities": capabilities,
        "total_pages": total,
        "free_pages": free,
        "outstanding_pages": outstanding,
        "max_mfn": max_mfn,
    }
    if arch_caps is not None:
        out["arch_capabilities"] = arch_caps
    return out


def domctl_raw(cmd: int, version: int, domid: int) -> tuple[int, int, int, bytes]:
    """One domctl; returns (ret, errno, domain field after the call, 128-byte union)."""
    with HypercallBuffer() as buf:
        buf.write(0, struct.pack("<IIH", cmd, version, domid).ljust(DOMCTL_SIZE, b"\0"))
        ret, err = hypercall(HYPERVISOR_domctl, buf.addr)
        raw = buf.read(0, DOMCTL_SIZE)
        return ret, err, struct.unpack_from("<H", raw, 8)[0], raw[16:]


def detect_domctl_version(candidates: tuple[int, ...] = DOMCTL_VERSIONS) -> int:
    for v in candidates:
        ret, err, _, _ = domctl_raw(XEN_DOMCTL_getdomaininfo, v, 0)
        if not (ret == -1 and err == EACCES):
            return v
    raise OSError(EACCES, f"no domctl interface version in {[hex(v) for v in candidates]}")


def getdomaininfo(domid: int, domctl_interface_version: int) -> dict[str, int]:
    """XEN_DOMCTL_getdomaininfo (first 96 bytes: stable from 4.10 to 4.22).  Up to 4.17
    Xen answers for the first domain >= domid: check "domain"."""
    ret, err, _, u = domctl_raw(XEN_DOMCTL_getdomaininfo, domctl_interface_version, domid)
    _check(ret, err, f"domctl getdomaininfo({domid:#x})")
    return decode_domaininfo(u)


def decode_domaininfo(u: bytes) -> dict[str, int]:
    dom, flags, tot, maxp, outstanding, shr, paged, sif, cpu_time = struct.unpack_from(
        "<H2xI7Q", u, 0
    )
    online, max_vcpu_id, ssidref = struct.unpack_from("<III", u, 64)
    cpupool = struct.unpack_from("<I", u, 92)[0]
    return {
        "domain": dom,
        "flags": flags,
        "tot_pages": tot,
        "max_pages": maxp,
        "outstanding_pages": outstanding,
        "shr_pages": shr,
        "paged_pages": paged,
        "shared_info_frame": sif,
        "cpu_time": cpu_time,
        "nr_online_vcpus": online,
        "max_vcpu_id": max_vcpu_id,
        "ssidref": ssidref,
        "cpupool": cpupool,
    }


def list_domains(sysctl_interface_version: int) -> list[dict[str, int]]:
    """Every domain, through XEN_SYSCTL_getdomaininfolist asked for one record at a
    time (so the record size, which differs between releases, does not matter):
    first_domain u16 @0, max_domains u32 @4, buffer u64 @8, num_domains u32 @16 (OUT)."""
    out: list[dict[str, int]] = []
    first = 0
    with HypercallBuffer() as record:
        while first < DOMID_FIRST_RESERVED:
            record.write(0, bytes(GETDOMAININFO_STABLE))
            payload = struct.pack("<H2xIQ", first, 1, record.addr)
            ret, err, u = sysctl_raw(XEN_SYSCTL_getdomaininfolist, sysctl_interface_version,
                                     payload)
            _check(ret, err, f"sysctl getdomaininfolist({first})")
            (num,) = struct.unpack_from("<I", u, 16)
            if num == 0:
                break
            info = decode_domaininfo(record.read(0, GETDOMAININFO_STABLE))
            out.append(info)
            first = info["domain"] + 1
    return out


def _read_text(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


BALLOON = "/sys/devices/system/xen_memory/xen_memory0"


def linux_view() -> dict[str, Any]:
    """What the dom0 kernel itself says: /sys/hypervisor (its own xen_version read),
    the balloon driver's counters and /proc/meminfo (values in kB)."""
    hyp = {k: _read_text(f"/sys/hypervisor/{p}") for k, p in
           (("type", "type"), ("major", "version/major"), ("minor", "version/minor"),
            ("extra", "version/extra"), ("guest_type", "guest_type"),
            ("capabilities", "properties/capabilities"),
            ("changeset", "properties/changeset"))}
    balloon = {k: _int_or_none(_read_text(f"{BALLOON}/{p}")) for k, p in
               (("target_kb", "target_kb"), ("current_kb", "info/current_kb"),
                ("low_kb", "info/low_kb"), ("high_kb", "info/high_kb"))}
    meminfo: dict[str, int] = {}
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            meminfo[name] = int(fields[0])
    # The kernel's CPU lists (drivers/base/cpu.c): a PV dom0's CPU n is its vCPU n.
    cpus = {k: _read_text(f"/sys/devices/system/cpu/{k}") for k in ("possible", "online")}
    return {"sys_hypervisor": hyp, "balloon": balloon, "meminfo": meminfo, "cpus": cpus}


def probes_from(path: str) -> list[tuple[str, int | None]]:
    """The (quantity, subject) pairs of a `xenprobe check --json` report: the domid, or
    the vcpuid of a vcpu subject."""
    with open(path) as fh:
        report = json.load(fh)
    return [(r["quantity"], r.get("vcpu") if r["subject"] == "vcpu" else r["domid"])
            for r in report.get("results", [])]


# --------------------------------------------------------------------------- CLI

MEMORY_QUERIES: tuple[tuple[str, int, int | None], ...] = (
    ("maximum_ram_page", XENMEM_maximum_ram_page, None),
    ("current_reservation:self", XENMEM_current_reservation, DOMID_SELF),
    ("current_reservation:0", XENMEM_current_reservation, 0),
    ("current_reservation:nodom", XENMEM_current_reservation, NO_SUCH_DOMID),
    ("maximum_reservation:self", XENMEM_maximum_reservation, DOMID_SELF),
    ("maximum_gpfn:self", XENMEM_maximum_gpfn, DOMID_SELF),
)


def _guard(fn: Any, *args: Any) -> Any:
    """Run one reading; an error becomes {"error", "errno"} so the JSON stays whole."""
    try:
        return fn(*args)
    except OSError as exc:
        return {"error": str(exc), "errno": exc.errno}


def read_all(
    sysctl_version: int | None = None,
    domctl_version: int | None = None,
    legacy_physinfo: bool | None = None,
    extra_probes: list[tuple[str, int | None]] | None = None,
) -> dict[str, Any]:
    """Every reading, as one JSON-able dict.

    Keys: xen_version (+ _hex), xen_extraversion, memory_op.<name> = {subop, domid,
    ioctl:{ret, errno}, multicall}, sysctl_interface_version, physinfo,
    domctl_interface_version, getdomaininfo_0, getdomaininfo_nodom, domains (the
    getdomaininfolist records), getdomaininfo (domctl record per listed domain, by
    str(domid)), probes (read_probe of the host quantities, DOMID_SELF, every listed
    domain and ``extra_probes``; a STRUCT_QUANTITIES one without a multicall),
    livepatch (livepatch_list: LIST with nr 0), linux (linux_view).
    """
    out: dict[str, Any] = {"reader": "tests/realxen/reader.py", "pid": os.getpid()}
    ver = xen_version()
    out["xen_version"] = ver
    out["xen_version_hex"] = hex(ver)
    out["xen_extraversion"] = _guard(xen_extraversion)
    out["xen_text"] = {name: _guard(xen_text, cmd) for name, cmd in
                       (("capabilities", XENVER_capabilities),
                        ("changeset", XENVER_changeset),
                        ("commandline", XENVER_commandline))}
    # XENVER_build_id with a NULL argument: the note's size (or -errno without one).
    out["build_id_size"] = _guard(multicall_one, HYPERVISOR_xen_version, 10, None)
    # KEXEC_CMD_kexec_status of each image type (-ENOSYS on a PVH dom0).
    out["kexec_status"] = {q: _guard(multicall_one, HYPERVISOR_kexec_op,
                                     KEXEC_CMD_kexec_status, None, None, t)
                           for q, t in KEXEC_TYPE.items()}
    mem: dict[str, Any] = {}
    for name, subop, domid in MEMORY_QUERIES:
        ret, err = memory_op_ioctl(subop, domid)
        mem[name] = {
            "subop": subop,
            "domid": domid,
            "ioctl": {"ret": ret, "errno": err},
            "multicall": _guard(memory_op_multicall, subop, domid),
        }
    out["memory_op"] = mem

    sv = sysctl_version if sysctl_version is not None else _guard(detect_sysctl_version)
    out["sysctl_interface_version"] = sv
    if isinstance(sv, int):
        legacy = sv < 0x15 if legacy_physinfo is None else legacy_physinfo
        out["physinfo_layout"] = "4.10-4.16" if legacy else "4.17+"
        out["physinfo"] = _guard(physinfo, sv, legacy)

    dv = domctl_version if domctl_version is not None else _guard(detect_domctl_version)
    out["domctl_interface_version"] = dv
    if isinstance(dv, int):
        out["getdomaininfo_0"] = _guard(getdomaininfo, 0, dv)
        out["getdomaininfo_nodom"] = _guard(getdomaininfo, NO_SUCH_DOMID, dv)

    domids: list[int] = []
    if isinstance(sv, int):
        listed = _guard(list_domains, sv)
        out["domains"] = listed
        if isinstance(listed, list):
            domids = [d["domain"] for d in listed]
    if isinstance(dv, int):
        out["getdomaininfo"] = {str(d): _guard(getdomaininfo, d, dv) for d in domids}

    wanted: list[tuple[str, int | None]] = [("xen_version", None), ("maximum_ram_page", None)]
    wanted += [(q, DOMID_SELF) for q in ("current_reservation", "maximum_reservation")]
    wanted += [(q, d) for d in domids
               for q in ("current_reservation", "maximum_reservation", "maximum_gpfn")]
    for probe in extra_probes or []:
        if probe not in wanted:
            wanted.append(probe)
    if isinstance(sv, int):
        out["livepatch"] = _guard(livepatch_list, sv)
    out["probes"] = [read_struct_probe(q, sv) if q in STRUCT_QUANTITIES and isinstance(sv, int)
                     else read_probe(q, d) for q, d in wanted]
    out["linux"] = linux_view()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sysctl-version", type=lambda s: int(s, 0))
    ap.add_argument("--domctl-version", type=lambda s: int(s, 0))
    ap.add_argument("--legacy-physinfo", action="store_true", default=None)
    ap.add_argument("--probes-from", metavar="CHECK_JSON",
                    help="also read every (quantity, domid) this xenprobe report probed")
    ap.add_argument("-o", "--output", help="write the JSON here as well as to stdout")
    args = ap.parse_args(argv)
    extra: list[tuple[str, int | None]] | None = None
    if args.probes_from:
        try:
            extra = probes_from(args.probes_from)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"reader: ignoring --probes-from {args.probes_from}: {exc}", file=sys.stderr)
    try:
        data = read_all(args.sysctl_version, args.domctl_version, args.legacy_physinfo, extra)
    except OSError as exc:  # no privcmd (not a dom0, not root): still one JSON object
        print(json.dumps({"error": str(exc), "errno": exc.errno}))
        return 2
    text = json.dumps(data, indent=2, sort_keys=True)
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
