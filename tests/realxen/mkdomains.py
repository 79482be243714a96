# SPDX-License-Identifier: GPL-2.0-only
"""Create paused PV domains that hold memory: Debian's libxenctrl, or raw hypercalls.

Test harness only (the agent stays read-only): runs as root inside the QEMU dom0 with
the system python3 and prints one JSON object.  Each domain is made the way a toolstack
starts one, minus the kernel: xc_domain_create (PV, one vCPU) -> xc_domain_max_vcpus ->
xc_domain_setmaxmem -> xc_domain_increase_reservation_exact -> xc_domain_setmaxmem
(the final limit); on a failure after the create, xc_domain_destroy.  A new domain
stays paused by the controller (Xen's domain_create sets controller_pause_count = 1;
nothing unpauses it), so it only holds its pages.  Two backends do that sequence:

- ``libxenctrl``: Debian's real libxenctrl through ctypes (it is exercised too);
  it must be the running hypervisor's release (its domctl interface version is
  compiled in), so only 4.17 here: trixie's libxenctrl.so.4.20 needs glibc >= 2.38
  and the dom0 runs the host's bookworm userland;
- ``privcmd``: the same domctls and memory_op as raw IOCTL_PRIVCMD_HYPERCALLs on
  /dev/xen/privcmd, with reader.py's locked hypercall buffers and ioctl wrapper; any
  release with a layout below (the session uses it on 4.20).

    LD_LIBRARY_PATH=<libdir> python3 mkdomains.py --lib <libdir>/libxenctrl.so.4.17 \\
        --release 4.17 --domain 16384:32768 --domain 4096:0x200003039 -o out.json
    python3 mkdomains.py --backend privcmd --release 4.20 --domain 16384:32768 ...

--domain CURRENT_KIB:MAXIMUM_KIB[:MAX_PFN] (integers, 0x.. allowed).  MAX_PFN, when
given, is written into the new domain's shared_info arch.max_pfn, as a PV guest's kernel
writes it (Linux: arch/x86/xen/p2m.c, xen_setup_mfn_list_list / xen_p2m_init) and as the
domain builder does; Xen then answers XENMEM_maximum_gpfn with
(arch_get_max_pfn(d) ?: 1) - 1 (xen/arch/x86/mm.c@RELEASE-4.14.6:474,
@RELEASE-4.17.0:489, @RELEASE-4.20.0:485; arch_get_max_pfn reads
d->shared_info->native.arch.max_pfn, asm/shared.h@RELEASE-4.17.0:10-16,70).  So a PV
guest chooses its own maximum_gpfn, up to 2^64 - 2.  The page is mapped the way
libxenguest maps it (xc_map_foreign_range of getdomaininfo's shared_info_frame): mmap of
/dev/xen/privcmd, then IOCTL_PRIVCMD_MMAPBATCH_V2 (0x00205004: num u32 @0, dom u16 @4,
addr u64 @8, arr u64 @16, err u64 @24; 32 bytes; include/uapi/xen/privcmd.h).
offsetof(struct shared_info, arch.max_pfn) = 3088 and
offsetof(struct xen_domctl_getdomaininfo, shared_info_frame) = 48 on x86-64 at
RELEASE-4.14.6, 4.17.0 and 4.20.0 (gcc on each tag's public headers).

struct xen_domctl_createdomain is passed by pointer and copied whole by
xc_domain_create, so its size and offsets must be the release's.  From
xen/include/public/domctl.h (+ arch-x86/xen.h for `arch`):

    4.14 (XEN_DOMCTL_INTERFACE_VERSION 0x12, domctl.h@RELEASE-4.14.6:41, struct at :49):
    ssidref u32 @0, handle u8[16] @4, flags @20, iommu_opts @24, max_vcpus @28,
    max_evtchn_port @32, max_grant_frames s32 @36, max_maptrack_frames s32 @40,
    arch.emulation_flags @44 (no grant_opts, vmtrace_size, cpupool_id or misc_flags yet);
    48 bytes (gcc on the RELEASE-4.14.6 headers).
    4.17 (XEN_DOMCTL_INTERFACE_VERSION 0x15): ssidref u32 @0, handle u8[16] @4,
    flags @20, iommu_opts @24, max_vcpus @28, max_evtchn_port @32,
    max_grant_frames s32 @36, max_maptrack_frames s32 @40, grant_opts @44,
    vmtrace_size @48, cpupool_id @52, arch.emulation_flags @56, arch.misc_flags @60;
    64 bytes.
    4.20 (0x17, domctl.h@RELEASE-4.20.0:34, struct at :42; the same at RELEASE-4.20.4):
    as 4.17 up to grant_opts @44, then altp2m_opts u32 @48 (commit 0291089f6e, first
    in 4.19), vmtrace_size @52, cpupool_id @56, arch.emulation_flags @60,
    arch.misc_flags @64 (arch-x86/xen.h:263); 68 bytes.

The privcmd backend's own ABI facts (xen.h, domctl.h, memory.h at RELEASE-4.17.0 and
RELEASE-4.20.0; offsets dumped with gcc from the headers, -D__XEN_TOOLS__, x86-64):

    __HYPERVISOR_domctl 36, __HYPERVISOR_memory_op 12 (xen.h@4.20:114, :90).
    struct xen_domctl: cmd u32 @0, interface_version u32 @4, domain u16 @8 (IN/OUT),
    _pad[3] @10, union u @16 (padded to 128 bytes); 144 bytes (domctl.h@4.20:1246).
    Xen copies the whole struct in, returns -EACCES unless interface_version is its
    own, and copies it back for createdomain (common/domctl.c@4.20:292, :454, :890).
    XEN_DOMCTL_createdomain 1: domain 0 or >= DOMID_FIRST_RESERVED (0x7FF0) lets Xen
    pick a free id (a rover from the last one), returned in xen_domctl.domain; for a
    PV domain Xen ORs XEN_DOMCTL_CDF_oos_off (1 << 3) into the copied-back flags
    (arch/x86/domain.c@4.20:676).  What Xen rejects for PV (-EINVAL; common/domain.c
    sanitise_domain_config, arch/x86/domain.c arch_sanitise_domain_config and
    emulation_flags_ok): unknown flags bits, iommu_opts without CDF_iommu, max_vcpus 0
    or above MAX_VIRT_CPUS, grant_opts beyond the version bits, vmtrace_size != 0,
    altp2m_opts beyond the mode bits or a mode without HAP, arch.emulation_flags other
    than 0 or PIT, arch.misc_flags other than MSR_RELAXED.  The 4.17 -> 4.20 shift
    moves only zeros in the config sent here, so Xen could not tell a wrong layout
    from the right one: the privcmd backend first checks XENVER_version against
    --release, and sends that release's interface version (else -EACCES).
    XEN_DOMCTL_destroydomain 2 (no payload; restarted as a continuation inside Xen).
    XEN_DOMCTL_max_mem 11: max_memkb u64 @0; max_pages = min(max_memkb >> 2,
    UINT_MAX) (domctl.c@4.20:627-638; max_pages is unsigned int).
    XEN_DOMCTL_max_vcpus 15: max u32 @0, which must equal createdomain's max_vcpus.
    XENMEM_increase_reservation 0 (memory_op(cmd, &reservation); cmd >> 6 is the
    continuation's start extent, so 0): struct xen_memory_reservation extent_start
    (guest handle: a u64 pointer to xen_pfn_t[]) @0, nr_extents xen_ulong_t (u64) @8,
    extent_order u32 @16, mem_flags u32 @20, domid u16 @24; 32 bytes (memory.h@4.20:46).
    Returns the extents done (memory.c@4.20:1465), a short count on failure, never
    -errno for allocation failures; for a PV domain Xen writes each extent's MFN into
    extent_start[i].  The same numbers and offsets at 4.17 (domctl 0x15).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import json
import mmap
import os
import struct
import sys
import uuid
from typing import Any

try:
    from . import reader as rd
except ImportError:  # run as a script (python3 tests/realxen/mkdomains.py) in dom0
    import reader as rd

PAGE_KIB = 4
XEN_DOMCTL_GRANT_VERSION_1 = 1  # XEN_DOMCTL_GRANT_version(1)
NO_EVTCHN_LIMIT = 0xFFFFFFFF  # max_evtchn_port = -1, as xen.lowlevel.xc passes it
DEFAULT_LIMIT = -1  # max_grant_frames / max_maptrack_frames: the hypervisor's default
XEN_DOMCTL_CDF_OOS_OFF = 1 << 3  # set by Xen for every PV domain

# The privcmd backend (facts in the module docstring).
XEN_DOMCTL_CREATEDOMAIN = 1
XEN_DOMCTL_DESTROYDOMAIN = 2
XEN_DOMCTL_MAX_MEM = 11
XEN_DOMCTL_MAX_VCPUS = 15
XENMEM_INCREASE_RESERVATION = 0
DOMCTL_UNION = 128  # xen_domctl.u, at offset 16
DOMCTL_INTERFACE = {"4.14": 0x12, "4.17": 0x15, "4.20": 0x17}
XEN_VERSION = {"4.14": 0x4000E, "4.17": 0x40011, "4.20": 0x40014}  # (major << 16) | minor
IOCTL_PRIVCMD_MMAPBATCH_V2 = 0x00205004
MMAPBATCH_V2 = struct.Struct("<IH2xQQQ")  # num, dom, addr, arr, err
SHARED_INFO_MAX_PFN = 3088  # offsetof(struct shared_info, arch.max_pfn), x86-64
RESERVATION = struct.Struct("<QQIIH6x")  # extent_start, nr_extents, order, mem_flags, domid
XEN_PFN = 8  # sizeof(xen_pfn_t): unsigned long


# Both releases' struct xen_domctl_createdomain: the same fields up to grant_opts, and
# the same tail; 4.19 inserted altp2m_opts between them.
_CREATE_HEAD = [
    ("ssidref", ctypes.c_uint32),
    ("handle", ctypes.c_uint8 * 16),
    ("flags", ctypes.c_uint32),  # 0: PV (no XEN_DOMCTL_CDF_hvm)
    ("iommu_opts", ctypes.c_uint32),
    ("max_vcpus", ctypes.c_uint32),
    ("max_evtchn_port", ctypes.c_uint32),
    ("max_grant_frames", ctypes.c_int32),
    ("max_maptrack_frames", ctypes.c_int32),
    ("grant_opts", ctypes.c_uint32),
]
_CREATE_TAIL = [
    ("vmtrace_size", ctypes.c_uint32),
    ("cpupool_id", ctypes.c_uint32),
    ("emulation_flags", ctypes.c_uint32),  # arch: 0 for PV
    ("misc_flags", ctypes.c_uint32),
]


class CreateDomain414(ctypes.Structure):
    _fields_ = [*_CREATE_HEAD[:-1], ("emulation_flags", ctypes.c_uint32)]


class CreateDomain417(ctypes.Structure):
    _fields_ = _CREATE_HEAD + _CREATE_TAIL


class CreateDomain420(ctypes.Structure):
    # altp2m_opts: 0 (altp2m needs HVM and HAP).
    _fields_ = [*_CREATE_HEAD, ("altp2m_opts", ctypes.c_uint32), *_CREATE_TAIL]


LAYOUTS: dict[str, type[ctypes.Structure]] = {"4.14": CreateDomain414,
                                               "4.17": CreateDomain417,
                                               "4.20": CreateDomain420}
SIZES = {"4.14": 48, "4.17": 64, "4.20": 68}
OFFSETS = {  # the docstring's offsets, asserted against the ctypes layouts below
    "4.14": {"flags": 20, "max_vcpus": 28, "max_maptrack_frames": 40,
             "emulation_flags": 44},
    "4.17": {"flags": 20, "max_vcpus": 28, "grant_opts": 44, "vmtrace_size": 48,
             "emulation_flags": 56, "misc_flags": 60},
    "4.20": {"flags": 20, "max_vcpus": 28, "grant_opts": 44, "altp2m_opts": 48,
             "vmtrace_size": 52, "emulation_flags": 60, "misc_flags": 64},
}


def config_type(release: str) -> type[ctypes.Structure]:
    if release not in LAYOUTS:
        raise SystemExit(f"no xen_domctl_createdomain layout for Xen {release}")
    t = LAYOUTS[release]
    assert ctypes.sizeof(t) == SIZES[release]
    for name, off in OFFSETS[release].items():
        assert getattr(t, name).offset == off, (release, name)
    return t


def new_config(release: str, tag: str) -> tuple[ctypes.Structure, bytes]:
    """A PV domain with one vCPU and Xen's default limits; the handle names the tag."""
    cfg = config_type(release)()
    handle = uuid.uuid5(uuid.NAMESPACE_OID, f"xenprobe-realxen-{tag}").bytes
    cfg.handle = (ctypes.c_uint8 * 16)(*handle)
    cfg.flags = 0
    cfg.max_vcpus = 1
    cfg.max_evtchn_port = NO_EVTCHN_LIMIT
    cfg.max_grant_frames = DEFAULT_LIMIT
    cfg.max_maptrack_frames = DEFAULT_LIMIT
    if hasattr(cfg, "grant_opts"):  # 4.15 and later
        cfg.grant_opts = XEN_DOMCTL_GRANT_VERSION_1
    return cfg, handle


class XcError(OSError):
    pass


class Libxc:
    """The sequence through Debian's libxenctrl (ctypes)."""

    backend = "libxenctrl"

    def __init__(self, path: str, release: str) -> None:
        self.release = release
        self.config_type = config_type(release)
        self.lib = ctypes.CDLL(path, use_errno=True)
        lib = self.lib
        lib.xc_interface_open.restype = ctypes.c_void_p
        lib.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
        lib.xc_interface_close.argtypes = [ctypes.c_void_p]
        lib.xc_domain_create.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(self.config_type),
        ]
        lib.xc_domain_max_vcpus.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint]
        lib.xc_domain_setmaxmem.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]
        lib.xc_domain_increase_reservation_exact.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_ulong,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint64),
        ]
        lib.xc_domain_destroy.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        for name in (
            "xc_domain_create",
            "xc_domain_max_vcpus",
            "xc_domain_setmaxmem",
            "xc_domain_increase_reservation_exact",
            "xc_domain_destroy",
        ):
            getattr(lib, name).restype = ctypes.c_int
        self.xch = lib.xc_interface_open(None, None, 0)
        if not self.xch:
            err = ctypes.get_errno()
            raise XcError(err, f"xc_interface_open: {os.strerror(err)}")

    def _ok(self, ret: int, what: str) -> None:
        if ret != 0:
            err = ctypes.get_errno()
            raise XcError(err, f"{what}: returned {ret}, {os.strerror(err)}")

    def create(self, cur_kib: int, max_kib: int, tag: str) -> dict[str, Any]:
        cfg, handle = new_config(self.release, tag)
        domid = ctypes.c_uint32(0)  # 0: let Xen pick a free id
        self._ok(self.lib.xc_domain_create(self.xch, ctypes.byref(domid), ctypes.byref(cfg)),
                 "xc_domain_create")
        d = domid.value
        pages = cur_kib // PAGE_KIB
        try:
            self._ok(self.lib.xc_domain_max_vcpus(self.xch, d, 1), "xc_domain_max_vcpus")
            self._ok(self.lib.xc_domain_setmaxmem(self.xch, d, cur_kib), "xc_domain_setmaxmem")
            if pages:
                frames = (ctypes.c_uint64 * pages)()  # Xen writes back each extent's MFN
                self._ok(
                    self.lib.xc_domain_increase_reservation_exact(self.xch, d, pages, 0, 0,
                                                                 frames),
                    "xc_domain_increase_reservation_exact",
                )
            self._ok(self.lib.xc_domain_setmaxmem(self.xch, d, max_kib), "xc_domain_setmaxmem")
        except XcError:
            self.lib.xc_domain_destroy(self.xch, d)
            raise
        return created(d, pages, max_kib, handle, cfg.flags)

    def close(self) -> None:
        if self.xch:
            self.lib.xc_interface_close(self.xch)
            self.xch = None


class Privcmd:
    """The same sequence as raw hypercalls through /dev/xen/privcmd, with reader.py's
    primitives (HypercallBuffer: page-aligned MAP_LOCKED memory; hypercall(): glibc's
    ioctl(IOCTL_PRIVCMD_HYPERCALL)).  Every result used here is far below 2^31, so the
    int ioctl return loses nothing."""

    backend = "privcmd"

    def __init__(self, release: str) -> None:
        self.release = release
        self.config_type = config_type(release)
        if release not in DOMCTL_INTERFACE:
            raise SystemExit(f"no domctl interface version for Xen {release}")
        self.interface = DOMCTL_INTERFACE[release]
        running = rd.xen_version()  # opens privcmd: OSError if this is no dom0
        if running != XEN_VERSION[release]:
            raise SystemExit(f"the running hypervisor is {running >> 16}.{running & 0xFFFF},"
                             f" not {release}: its structs and interface version differ")

    def domctl(self, cmd: int, domid: int, payload: bytes = b"") -> tuple[int, bytes]:
        """One domctl; returns (xen_domctl.domain, the union) as Xen copied them back."""
        assert len(payload) <= DOMCTL_UNION
        head = struct.pack("<IIH6x", cmd, self.interface, domid)
        with rd.HypercallBuffer() as buf:
            buf.write(0, head + payload.ljust(DOMCTL_UNION, b"\0"))
            ret, err = rd.hypercall(rd.HYPERVISOR_domctl, buf.addr)
            raw = buf.read(0, rd.DOMCTL_SIZE)
        if ret != 0:
            raise XcError(err, f"domctl {cmd} (domain {domid}): returned {ret}, "
                               f"{os.strerror(err) if err else 'no errno'}")
        return struct.unpack_from("<H", raw, 8)[0], raw[16:]

    def increase_reservation(self, domid: int, pages: int) -> None:
        """XENMEM_increase_reservation of `pages` order-0 extents; all or an error (as
        xc_domain_increase_reservation_exact: a short count is ENOMEM)."""
        frame_pages = -(-pages * XEN_PFN // rd.PAGE)
        with rd.HypercallBuffer(frame_pages) as frames, rd.HypercallBuffer() as arg:
            arg.write(0, RESERVATION.pack(frames.addr, pages, 0, 0, domid))
            ret, err = rd.hypercall(rd.HYPERVISOR_memory_op, XENMEM_INCREASE_RESERVATION,
                                    arg.addr)
        if ret == -1:
            raise XcError(err, f"increase_reservation({domid}, {pages}): {os.strerror(err)}")
        if ret != pages:
            raise XcError(errno.ENOMEM, f"increase_reservation({domid}, {pages}): {ret} "
                                        "extents allocated")  # as libxenctrl says

    def create(self, cur_kib: int, max_kib: int, tag: str) -> dict[str, Any]:
        cfg, handle = new_config(self.release, tag)
        d, u = self.domctl(XEN_DOMCTL_CREATEDOMAIN, 0, bytes(cfg))  # 0: Xen picks the id
        back = self.config_type.from_buffer_copy(u[:ctypes.sizeof(self.config_type)])
        pages = cur_kib // PAGE_KIB
        try:
            if not 0 < d < rd.DOMID_FIRST_RESERVED:
                raise XcError(errno.EINVAL, f"createdomain gave domain id {d:#x}")
            self.domctl(XEN_DOMCTL_MAX_VCPUS, d, struct.pack("<I", 1))
            self.domctl(XEN_DOMCTL_MAX_MEM, d, struct.pack("<Q", cur_kib))
            if pages:
                self.increase_reservation(d, pages)
            self.domctl(XEN_DOMCTL_MAX_MEM, d, struct.pack("<Q", max_kib))
        except XcError as exc:
            if 0 < d < rd.DOMID_FIRST_RESERVED:
                try:
                    self.domctl(XEN_DOMCTL_DESTROYDOMAIN, d)
                except XcError as undo:
                    raise XcError(exc.errno, f"{exc.strerror}; and destroying domain {d}: "
                                             f"{undo.strerror}") from exc
            raise
        return created(d, pages, max_kib, handle, back.flags)

    def close(self) -> None:
        pass


def set_max_pfn(domid: int, max_pfn: int) -> int:
    """Write shared_info arch.max_pfn of a domain (see the module docstring); returns
    the shared_info frame it wrote to."""
    frame = rd.getdomaininfo(domid, rd.detect_domctl_version())["shared_info_frame"]
    fd = os.open(rd.PRIVCMD, os.O_RDWR | os.O_CLOEXEC)
    try:
        page = mmap.mmap(fd, rd.PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            view = ctypes.c_char.from_buffer(page)
            arr, err = (ctypes.c_uint64 * 1)(frame), (ctypes.c_int * 1)(0)
            req = bytearray(MMAPBATCH_V2.pack(1, domid, ctypes.addressof(view),
                                              ctypes.addressof(arr), ctypes.addressof(err)))
            del view  # the mapping may only be closed once no export is left
            fcntl.ioctl(fd, IOCTL_PRIVCMD_MMAPBATCH_V2, req)
            if err[0]:
                raise XcError(-err[0], f"mapping domain {domid}'s shared_info frame "
                                       f"{frame:#x}: {os.strerror(-err[0])}")
            struct.pack_into("<Q", page, SHARED_INFO_MAX_PFN, max_pfn)
        finally:
            page.close()
    except OSError as exc:
        if isinstance(exc, XcError):
            raise
        raise XcError(exc.errno, f"shared_info of domain {domid}: {exc}") from exc
    finally:
        os.close(fd)
    return int(frame)


def created(domid: int, pages: int, max_kib: int, handle: bytes, flags: int) -> dict[str, Any]:
    """One domain's record.  config_flags: xen_domctl_createdomain.flags as Xen copied it
    back (a PV domain gets XEN_DOMCTL_CDF_oos_off)."""
    return {"domid": domid, "tot_pages": pages, "max_kib": max_kib,
            "max_pages": max_kib // PAGE_KIB, "handle": handle.hex(), "config_flags": flags}


def _pair(text: str) -> tuple[int, int, int | None]:
    cur, _, rest = text.partition(":")
    mx, _, pfn = rest.partition(":")
    return int(cur, 0), int(mx or cur, 0), (int(pfn, 0) if pfn else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("libxenctrl", "privcmd"),
                    help="default: libxenctrl with --lib, else privcmd")
    ap.add_argument("--lib", help="path of libxenctrl.so.<release> (libxenctrl backend)")
    ap.add_argument("--release", required=True, help="Xen release of the running hypervisor")
    ap.add_argument("--domain", action="append", type=_pair, default=[],
                    metavar="CUR_KIB:MAX_KIB[:MAX_PFN]")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    backend = args.backend or ("libxenctrl" if args.lib else "privcmd")
    if backend == "libxenctrl" and not args.lib:
        ap.error("the libxenctrl backend needs --lib")
    out: dict[str, Any] = {"backend": backend, "lib": args.lib if backend == "libxenctrl"
                           else None, "release": args.release, "domains": []}
    status = 0
    try:
        xc: Libxc | Privcmd = (Libxc(args.lib, args.release) if backend == "libxenctrl"
                               else Privcmd(args.release))
    except (OSError, SystemExit) as exc:
        out["error"] = str(exc)
        status = 1
    else:
        try:
            for i, (cur, mx, pfn) in enumerate(args.domain):
                dom = xc.create(cur, mx, f"{args.release}-{i}")
                out["domains"].append(dom)
                if pfn is not None:
                    dom["shared_info_frame"] = set_max_pfn(dom["domid"], pfn)
                    dom["max_pfn"] = pfn
        except XcError as exc:
            out["error"] = str(exc)
            status = 1
        finally:
            xc.close()
    text = json.dumps(out, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
