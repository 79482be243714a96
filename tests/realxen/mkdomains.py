"""Create paused PV domains that hold memory, through Debian's real libxenctrl.

Test harness only (the agent stays read-only): runs as root inside the QEMU dom0 with
the system python3 and prints one JSON object.  Each domain is made the way a toolstack
starts one, minus the kernel: xc_domain_create (PV, one vCPU) -> xc_domain_max_vcpus ->
xc_domain_setmaxmem -> xc_domain_increase_reservation_exact -> xc_domain_setmaxmem
(the final limit).  A new domain stays paused by the controller (Xen's domain_create
sets controller_pause_count = 1; nothing unpauses it), so it only holds its pages.

    LD_LIBRARY_PATH=<libdir> python3 mkdomains.py --lib <libdir>/libxenctrl.so.4.17 \\
        --release 4.17 --domain 16384:32768 --domain 4096:0x200003039 -o out.json

--domain CURRENT_KIB:MAXIMUM_KIB (integers, 0x.. allowed).  libxenctrl must be the
running hypervisor's release: its domctl interface version is compiled in.

struct xen_domctl_createdomain is passed by pointer and copied whole by
xc_domain_create, so its size and offsets must be the release's.  From
xen/include/public/domctl.h (+ arch-x86/xen.h for `arch`):

    4.17 (XEN_DOMCTL_INTERFACE_VERSION 0x15): ssidref u32 @0, handle u8[16] @4,
    flags @20, iommu_opts @24, max_vcpus @28, max_evtchn_port @32,
    max_grant_frames s32 @36, max_maptrack_frames s32 @40, grant_opts @44,
    vmtrace_size @48, cpupool_id @52, arch.emulation_flags @56, arch.misc_flags @60;
    64 bytes.  (4.20, 0x17, inserts altp2m_opts after grant_opts: 68 bytes.)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import uuid
from typing import Any

PAGE_KIB = 4
XEN_DOMCTL_GRANT_VERSION_1 = 1  # XEN_DOMCTL_GRANT_version(1)
NO_EVTCHN_LIMIT = 0xFFFFFFFF  # max_evtchn_port = -1, as xen.lowlevel.xc passes it
DEFAULT_LIMIT = -1  # max_grant_frames / max_maptrack_frames: the hypervisor's default


class CreateDomain417(ctypes.Structure):
    _fields_ = [
        ("ssidref", ctypes.c_uint32),
        ("handle", ctypes.c_uint8 * 16),
        ("flags", ctypes.c_uint32),  # 0: PV (no XEN_DOMCTL_CDF_hvm)
        ("iommu_opts", ctypes.c_uint32),
        ("max_vcpus", ctypes.c_uint32),
        ("max_evtchn_port", ctypes.c_uint32),
        ("max_grant_frames", ctypes.c_int32),
        ("max_maptrack_frames", ctypes.c_int32),
        ("grant_opts", ctypes.c_uint32),
        ("vmtrace_size", ctypes.c_uint32),
        ("cpupool_id", ctypes.c_uint32),
        ("emulation_flags", ctypes.c_uint32),  # arch: 0 for PV
        ("misc_flags", ctypes.c_uint32),
    ]


LAYOUTS: dict[str, type[ctypes.Structure]] = {"4.17": CreateDomain417}
SIZES = {"4.17": 64}


class XcError(OSError):
    pass


class Libxc:
    def __init__(self, path: str, release: str) -> None:
        if release not in LAYOUTS:
            raise SystemExit(f"no xen_domctl_createdomain layout for Xen {release}")
        self.config_type = LAYOUTS[release]
        assert ctypes.sizeof(self.config_type) == SIZES[release]
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
        cfg = self.config_type()
        handle = uuid.uuid5(uuid.NAMESPACE_OID, f"xenprobe-realxen-{tag}").bytes
        cfg.handle = (ctypes.c_uint8 * 16)(*handle)
        cfg.flags = 0
        cfg.max_vcpus = 1
        cfg.max_evtchn_port = NO_EVTCHN_LIMIT
        cfg.max_grant_frames = DEFAULT_LIMIT
        cfg.max_maptrack_frames = DEFAULT_LIMIT
        cfg.grant_opts = XEN_DOMCTL_GRANT_VERSION_1
        domid = ctypes.c_uint32(0)  # 0: let Xen pick the lowest free id
        self._ok(self.lib.xc_domain_create(self.xch, ctypes.byref(domid), ctypes.byref(cfg)),
                 "xc_domain_create")
        d = domid.value
        try:
            self._ok(self.lib.xc_domain_max_vcpus(self.xch, d, 1), "xc_domain_max_vcpus")
            pages = cur_kib // PAGE_KIB
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
        return {"domid": d, "tot_pages": pages, "max_kib": max_kib,
                "max_pages": max_kib // PAGE_KIB, "handle": handle.hex()}

    def close(self) -> None:
        if self.xch:
            self.lib.xc_interface_close(self.xch)
            self.xch = None


def _pair(text: str) -> tuple[int, int]:
    cur, _, mx = text.partition(":")
    return int(cur, 0), int(mx or cur, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", required=True, help="path of libxenctrl.so.<release>")
    ap.add_argument("--release", required=True, help="Xen release of that library")
    ap.add_argument("--domain", action="append", type=_pair, default=[],
                    metavar="CUR_KIB:MAX_KIB")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"lib": args.lib, "release": args.release, "domains": []}
    status = 0
    try:
        xc = Libxc(args.lib, args.release)
    except (OSError, SystemExit) as exc:
        out["error"] = str(exc)
        status = 1
    else:
        try:
            for i, (cur, mx) in enumerate(args.domain):
                out["domains"].append(xc.create(cur, mx, f"{args.release}-{i}"))
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
