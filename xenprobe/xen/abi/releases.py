# SPDX-License-Identifier: GPL-2.0-only
"""What changed between Xen releases, one row per release (xen-abi.md sections 4-6).

`sysctl` and `domctl` are XEN_SYSCTL_INTERFACE_VERSION and XEN_DOMCTL_INTERFACE_VERSION:
the hypervisor refuses any other value with -EACCES, so they also tell a build apart
from what its version number claims.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenprobe.xen.abi.layouts import (
    GETDOMAININFO_4_11,
    GETDOMAININFO_4_15,
    GETDOMAININFO_4_16,
    PHYSINFO_4_10,
    PHYSINFO_4_17,
    Layout,
)


@dataclass(frozen=True)
class Release:
    major: int
    minor: int
    sysctl: int
    domctl: int
    physinfo: Layout
    getdomaininfo: Layout
    # 4.18 (commit 31c6554974): getdomaininfo wants an exact domid; before, it
    # answered with the next domain at or above the id asked for.
    getdomaininfo_exact: bool
    # A PVH (HVM) dom0 can issue multicalls, which the raw layer needs, from 4.15.1
    # (x86/hvm/hypercall.c@RELEASE-4.15.1:127, commit 0f1002d406; absent at
    # RELEASE-4.15.0): None for 4.15, where the point release decides. A PV dom0 has
    # them on every release. (libxenctrl's own memory-op path is the library's fact:
    # xenprobe.xen.memop_path.)
    pvh_multicall: bool | None

    @property
    def name(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def version_word(self) -> int:
        """What XENVER_version returns: (major << 16) | minor."""
        return (self.major << 16) | self.minor


_P10, _P17 = PHYSINFO_4_10, PHYSINFO_4_17
_G11, _G15, _G16 = GETDOMAININFO_4_11, GETDOMAININFO_4_15, GETDOMAININFO_4_16

#        major minor sysctl domctl physinfo getdomaininfo exact  pvh-multicall
_ROWS = (
    Release(4, 13, 0x12, 0x12, _P10, _G11, False, False),
    Release(4, 14, 0x13, 0x12, _P10, _G11, False, False),
    Release(4, 15, 0x13, 0x13, _P10, _G15, False, None),
    Release(4, 16, 0x14, 0x14, _P10, _G16, False, True),
    Release(4, 17, 0x15, 0x15, _P17, _G16, False, True),
    Release(4, 18, 0x15, 0x16, _P17, _G16, True, True),
    Release(4, 19, 0x15, 0x17, _P17, _G16, True, True),
    Release(4, 20, 0x15, 0x17, _P17, _G16, True, True),
    Release(4, 21, 0x16, 0x17, _P17, _G16, True, True),
    Release(4, 22, 0x16, 0x18, _P17, _G16, True, True),
)

RELEASES: dict[tuple[int, int], Release] = {(r.major, r.minor): r for r in _ROWS}

SYSCTL_INTERFACES = sorted({r.sysctl for r in _ROWS})
DOMCTL_INTERFACES = sorted({r.domctl for r in _ROWS})


def supported() -> str:
    first, last = _ROWS[0], _ROWS[-1]
    return f"{first.name} to {last.name}"


def by_name(name: str) -> Release:
    """"4.17" -> its row; KeyError names the supported range."""
    try:
        major, minor = (int(p) for p in name.split("."))
        return RELEASES[(major, minor)]
    except (ValueError, KeyError):
        raise KeyError(f"Xen {name} is not in xenprobe's ABI tables (supported: "
                       f"{supported()})") from None


def physinfo_for_sysctl(interface: int) -> Layout:
    """The physinfo layout a given sysctl interface version uses."""
    return PHYSINFO_4_17 if interface >= 0x15 else PHYSINFO_4_10


def getdomaininfo_for_domctl(interface: int) -> Layout:
    """The getdomaininfo layout a given domctl interface version uses."""
    if interface >= 0x14:
        return GETDOMAININFO_4_16
    if interface == 0x13:
        return GETDOMAININFO_4_15
    return GETDOMAININFO_4_11
