# SPDX-License-Identifier: GPL-2.0-only
"""Independent references for the census quantities (quantities.CENSUS).

A pure mapping from facts the dom0 kernel publishes (read by `read_facts`) to the value
each quantity should have; None where no independent source exists.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from xenprobe.abi import census_ops as co
from xenprobe.classify import Truth
from xenprobe.quantities import Quantity

SYS_HYPERVISOR = Path("/sys/hypervisor")

# DR6 bits a vCPU's register can hold. Every bit of the reset value 0xFFFF0FF0 stays set
# except the active-low RTM (16) and BLD (11) status bits, which a #DB may clear
# (arch/x86/debug.c@4.20:57-66); bit 12 is forced to 0 and B0-B3/BD/BS/BT (0-3, 13-15)
# are set by a #DB until the guest writes DR6 back (arch/x86/traps.c@4.17:2072). The
# resting value is the reset value itself (arch/x86/domain.c@4.17:533).
DR6_LOWEST = co.X86_DR6_DEFAULT & ~((1 << 16) | (1 << 11))
DR6_HIGHEST = 0xFFFF_FFFF & ~(1 << 12)


@dataclass(frozen=True, slots=True)
class Facts:
    guest_type: str | None        # /sys/hypervisor/guest_type: "PV", "PVH", "HVM"
    page_size: int                # the dom0 kernel's page size
    extraversion: str | None      # /sys/hypervisor/version/extra
    capabilities: str | None      # /sys/hypervisor/properties/capabilities
    changeset: str | None         # /sys/hypervisor/properties/changeset


def references(f: Facts) -> dict[Quantity, Truth | None]:
    """What each census quantity should read, from the facts alone."""
    dr6: Truth | None = None
    if f.guest_type == "PV":
        dr6 = Truth.between(DR6_LOWEST, DR6_HIGHEST)
    elif f.guest_type in ("PVH", "HVM"):
        # get_debugreg is in the PV hypercall table only (include/hypercall-defs.c@4.17:234).
        dr6 = Truth.error(errno.ENOSYS)

    def length(text: str | None) -> Truth | None:
        # The kernel prints the xen_version string with "%s\n" (drivers/xen/sys-hypervisor.c);
        # the *2 subops return its strlen. extraversion's fixed 16-byte buffer holds at
        # most 15 characters, so a longer one has no reference here.
        return Truth.exact(len(text)) if text is not None else None

    extra = length(f.extraversion)
    if f.extraversion is not None and len(f.extraversion) >= co.XENVER_EXTRAVERSION_BUF:
        extra = None
    return {
        # x86 Xen and an x86-64 Linux dom0 both use 4 KiB pages.
        Quantity.XEN_PAGESIZE: Truth.exact(f.page_size),
        Quantity.BUILD_ID_SIZE: None,
        Quantity.EXTRAVERSION_LEN: extra,
        Quantity.CAPABILITIES_LEN: length(f.capabilities),
        Quantity.CHANGESET_LEN: length(f.changeset),
        Quantity.COMMANDLINE_LEN: None,
        Quantity.DEBUG_REGISTER_6: dr6,
        Quantity.SHARING_FREED_PAGES: None,
        Quantity.SHARING_SHARED_PAGES: None,
        Quantity.HYPFS_VERSION: None,
        # LIST asking for no entries copies none, and rc is the number copied
        # (common/livepatch.c@RELEASE-4.17.0:1163,1250, "return rc ? : idx" with idx 0;
        # xenprobe.livepatch): 0 on every build that has livepatch.
        Quantity.LIVEPATCH_LISTED: Truth.exact(0),
    }


def _text(path: Path) -> str | None:
    try:
        return path.read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def read_facts(root: Path = SYS_HYPERVISOR) -> Facts:
    if _text(root / "type") != "xen":
        return Facts(None, os.sysconf("SC_PAGE_SIZE"), None, None, None)
    return Facts(_text(root / "guest_type"), os.sysconf("SC_PAGE_SIZE"),
                 _text(root / "version" / "extra"),
                 _text(root / "properties" / "capabilities"),
                 _text(root / "properties" / "changeset"))
