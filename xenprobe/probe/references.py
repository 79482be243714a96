# SPDX-License-Identifier: GPL-2.0-only
"""Independent references: for each quantity, where the value it should have comes from.

REFERENCES maps every quantity (xenprobe.xen.quantities.RECORDS) to a pure function of
what a sweep read around its probes (`Sources`: physinfo, getdomaininfo's pages, the
version sysfs publishes, the facts the dom0 kernel publishes, read by `read_facts`) and
the probe; None where no independent source exists.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xenprobe.probe.classify import Truth
from xenprobe.probe.judge import Ref
from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi.platform import DOM0_VGA_CONSOLE_INFO
from xenprobe.xen.host import MAX_FRAMES
from xenprobe.xen.platform_requests import RESOURCE_ENTRIES
from xenprobe.xen.quantities import Probe, Quantity, Subject

SYS_HYPERVISOR = Path("/sys/hypervisor")
SYS_CPU = Path("/sys/devices/system/cpu")

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
    cpus_possible: frozenset[int] | None = None  # /sys/devices/system/cpu/possible
    cpus_online: frozenset[int] | None = None    # /sys/devices/system/cpu/online


def references(f: Facts) -> dict[Quantity, Truth | None]:
    """What each census quantity should read, from the facts alone."""
    dr6: Truth | None = None
    kexec: Truth | None = None
    if f.guest_type == "PV":
        dr6 = Truth.between(DR6_LOWEST, DR6_HIGHEST)
    elif f.guest_type in ("PVH", "HVM"):
        # get_debugreg is in the PV hypercall table only (include/hypercall-defs.c@4.17:234).
        dr6 = Truth.error(errno.ENOSYS)
        kexec = Truth.error(errno.ENOSYS)

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
        # kexec_status answers the slot bit of the image type (common/kexec.c@4.17:
        # 1210-1213), which nothing in Linux publishes: /sys/kernel/kexec_*_loaded are
        # Linux's own kexec images, not Xen's. On a PVH dom0 kexec_op is not in the
        # table (include/hypercall-defs.c@4.17:274): ENOSYS.
        Quantity.KEXEC_STATUS_DEFAULT: kexec,
        Quantity.KEXEC_STATUS_CRASH: kexec,
        # sizeof(struct dom0_vga_console_info), from the ABI's layout (4.18+; absent before).
        Quantity.DOM0_CONSOLE_SIZE: Truth.exact(DOM0_VGA_CONSOLE_INFO.size),
        # nr_done of a read of MSR_IA32_TSC, which Xen always allows and never fails
        # (x86/platform_hypercall.c@RELEASE-4.13.0:65-75,132-136 .. @RELEASE-4.20.0:78-79,
        # 169-174): every entry asked.
        Quantity.RESOURCE_OP_DONE: Truth.exact(RESOURCE_ENTRIES),
        # LIST asking for no entries copies none, and rc is the number copied
        # (common/livepatch.c@RELEASE-4.17.0:1163,1250, "return rc ? : idx" with idx 0;
        # xenprobe.xen.livepatch): 0 on every build that has livepatch.
        Quantity.LIVEPATCH_LISTED: Truth.exact(0),
    }


def vcpu_reference(f: Facts, vcpu: int) -> Truth | None:
    """What VCPUOP_is_up should answer for one of dom0's own vCPUs, or None.

    Only a PV dom0 has one: there Linux CPU n is vCPU n (xen_setup_vcpu_info_placement
    in arch/x86/xen/enlighten.c), Linux brings a CPU up with VCPUOP_up and takes an
    offlined one down with VCPUOP_down, waiting until is_up says 0 (xen_pv_cpu_up,
    xen_pv_cpu_die, xen_pv_play_dead in arch/x86/xen/smp_pv.c), and Xen creates every
    vCPU but vCPU 0 down (common/domain.c@4.17:262; pv/dom0_build.c@4.17:1039). So a
    possible CPU is up in Xen exactly when it is online in Linux, between transitions
    (which the sweep's look-again rule sees as drift). A PVH dom0 offlines a CPU without
    VCPUOP_down, so an offline CPU may still be up in Xen: no reference there. A vCPU
    Linux does not know (beyond its possible CPUs) has no reference either.
    """
    if f.guest_type != "PV" or f.cpus_possible is None or f.cpus_online is None:
        return None
    if vcpu not in f.cpus_possible:
        return None
    return Truth.exact(1 if vcpu in f.cpus_online else 0)


@dataclass(frozen=True)
class Sources:
    """What a sweep read to judge its probes against, read before and after them."""

    physinfo: Mapping[str, int | bytes] = field(default_factory=dict)
    domains: Mapping[int, tuple[int, int]] = field(default_factory=dict)  # (tot, max)
    version: int | None = None      # /sys/hypervisor/version as XENVER_version packs it
    self_domid: int | None = None   # who DOMID_SELF is; None where it could not be told
    facts: Facts | None = None      # None where no census quantity is offered
    census: Mapping[Quantity, Truth | None] = field(default_factory=dict)  # references(facts)


# A reference: the Sources and the probe -> what its value should be (an int for an
# exact page count, see judge.Ref).
Reference = Callable[[Sources, Probe], Ref]

_ESRCH = Truth.error(errno.ESRCH)


def no_reference(s: Sources, p: Probe) -> Ref:
    """No independent source exists (maximum_gpfn, the build-id size...)."""
    return None


def ram_frames(s: Sources, p: Probe) -> Ref:
    """max_page is the highest RAM frame + 1, so at least total_pages. physinfo's max_mfn
    is no upper bound: get_upper_mfn_bound() follows the hot-plug range's end and is
    capped at 2^32 without CONFIG_BIGMEM, so RAM can reach above it
    (x86/mm.c@RELEASE-4.17.0:6278-6287). A frame number of a 64-bit address is the only
    bound Xen guarantees."""
    total = s.physinfo["total_pages"]
    assert isinstance(total, int)
    return Truth.between(total, MAX_FRAMES)


def version(s: Sources, p: Probe) -> Ref:
    """XENVER_version: what /sys/hypervisor/version publishes."""
    return Truth.exact(s.version) if s.version is not None else None


def _pages(column: int) -> Reference:
    def pages(s: Sources, p: Probe) -> Ref:
        if p.subject is Subject.MISSING:
            return _ESRCH
        domid = s.self_domid if p.subject is Subject.SELF else p.domid
        if domid is None:
            return None  # who DOMID_SELF is could not be told
        info = s.domains.get(domid)
        return _ESRCH if info is None else info[column]
    return pages


# getdomaininfo's tot_pages and max_pages of the probe's domain (ESRCH where none is).
tot_pages = _pages(0)
max_pages = _pages(1)


def census_fact(s: Sources, p: Probe) -> Ref:
    """A host-wide census quantity: `references` of the facts the dom0 kernel published."""
    return s.census.get(p.quantity)


def vcpu_online(s: Sources, p: Probe) -> Ref:
    """VCPUOP_is_up of one of dom0's own vCPUs: `vcpu_reference`."""
    if s.facts is None or p.vcpu is None:
        return None
    return vcpu_reference(s.facts, p.vcpu)


# Every quantity's reference, one entry each (tests/test_seams.py holds it to RECORDS).
REFERENCES: dict[Quantity, Reference] = {
    Quantity.XEN_VERSION: version,
    Quantity.MAXIMUM_RAM_PAGE: ram_frames,
    **{q: census_fact for q in (
        Quantity.XEN_PAGESIZE, Quantity.BUILD_ID_SIZE, Quantity.EXTRAVERSION_LEN,
        Quantity.CAPABILITIES_LEN, Quantity.CHANGESET_LEN, Quantity.COMMANDLINE_LEN,
        Quantity.DEBUG_REGISTER_6, Quantity.SHARING_FREED_PAGES,
        Quantity.SHARING_SHARED_PAGES, Quantity.HYPFS_VERSION,
        Quantity.KEXEC_STATUS_DEFAULT, Quantity.KEXEC_STATUS_CRASH,
        Quantity.DOM0_CONSOLE_SIZE, Quantity.RESOURCE_OP_DONE,
        Quantity.LIVEPATCH_LISTED)},
    Quantity.VCPU_IS_UP: vcpu_online,
    Quantity.CURRENT_RESERVATION: tot_pages,
    Quantity.MAXIMUM_RESERVATION: max_pages,
    Quantity.MAXIMUM_GPFN: no_reference,
}


def _text(path: Path) -> str | None:
    try:
        return path.read_text().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return None


def cpu_list(text: str | None) -> frozenset[int] | None:
    """A sysfs CPU list ("0-3,5", "" for none; lib/bitmap.c's %*pbl), or None if it
    cannot be read as one."""
    if text is None:
        return None
    cpus: set[int] = set()
    try:
        for part in filter(None, text.strip().split(",")):
            first, _, last = part.partition("-")
            lo, hi = int(first), int(last or first)
            if lo < 0 or hi < lo:
                return None
            cpus.update(range(lo, hi + 1))
    except ValueError:
        return None
    return frozenset(cpus)


def read_facts(root: Path = SYS_HYPERVISOR, cpu: Path = SYS_CPU) -> Facts:
    if _text(root / "type") != "xen":
        return Facts(None, os.sysconf("SC_PAGE_SIZE"), None, None, None)
    return Facts(_text(root / "guest_type"), os.sysconf("SC_PAGE_SIZE"),
                 _text(root / "version" / "extra"),
                 _text(root / "properties" / "capabilities"),
                 _text(root / "properties" / "changeset"),
                 cpu_list(_text(cpu / "possible")), cpu_list(_text(cpu / "online")))
