# SPDX-License-Identifier: GPL-2.0-only
"""What xenprobe probes: each quantity, the hypercall that reads it, and for whom."""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterable
from dataclasses import dataclass

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc


class Quantity(enum.StrEnum):
    MAXIMUM_RAM_PAGE = "maximum_ram_page"
    CURRENT_RESERVATION = "current_reservation"
    MAXIMUM_RESERVATION = "maximum_reservation"
    MAXIMUM_GPFN = "maximum_gpfn"
    XEN_VERSION = "xen_version"
    # The census's other read-only paths (tests.census), host-wide, by value.
    XEN_PAGESIZE = "xen_pagesize"
    BUILD_ID_SIZE = "build_id_size"
    EXTRAVERSION_LEN = "extraversion_len"
    CAPABILITIES_LEN = "capabilities_len"
    CHANGESET_LEN = "changeset_len"
    COMMANDLINE_LEN = "commandline_len"
    DEBUG_REGISTER_6 = "debug_register_6"
    SHARING_FREED_PAGES = "sharing_freed_pages"
    SHARING_SHARED_PAGES = "sharing_shared_pages"
    HYPFS_VERSION = "hypfs_version"
    # Per vCPU of the caller's own domain (Subject.VCPU): VCPUOP_is_up.
    VCPU_IS_UP = "vcpu_is_up"
    # kexec_op status, one per image type (PV only).
    KEXEC_STATUS_DEFAULT = "kexec_status_default"
    KEXEC_STATUS_CRASH = "kexec_status_crash"
    # platform_op: its arg0 points to a struct (platform_requests.py).
    DOM0_CONSOLE_SIZE = "dom0_console_size"
    RESOURCE_OP_DONE = "resource_op_done"
    LIVEPATCH_LISTED = "livepatch_listed"


# (hypercall, cmd) per quantity; per-domain ones take a pointer to a domid_t.
CALLS: dict[Quantity, tuple[int, int]] = {
    Quantity.MAXIMUM_RAM_PAGE: (hc.MEMORY_OP, hc.XENMEM_maximum_ram_page),
    Quantity.CURRENT_RESERVATION: (hc.MEMORY_OP, hc.XENMEM_current_reservation),
    Quantity.MAXIMUM_RESERVATION: (hc.MEMORY_OP, hc.XENMEM_maximum_reservation),
    Quantity.MAXIMUM_GPFN: (hc.MEMORY_OP, hc.XENMEM_maximum_gpfn),
    Quantity.XEN_VERSION: (hc.XEN_VERSION, hc.XENVER_version),
    # A NULL argument: the length query of the build-id and *2 subops.
    Quantity.XEN_PAGESIZE: (hc.XEN_VERSION, co.XENVER_pagesize),
    Quantity.BUILD_ID_SIZE: (hc.XEN_VERSION, co.XENVER_build_id),
    Quantity.EXTRAVERSION_LEN: (hc.XEN_VERSION, co.XENVER_extraversion2),
    Quantity.CAPABILITIES_LEN: (hc.XEN_VERSION, co.XENVER_capabilities2),
    Quantity.CHANGESET_LEN: (hc.XEN_VERSION, co.XENVER_changeset2),
    Quantity.COMMANDLINE_LEN: (hc.XEN_VERSION, co.XENVER_commandline2),
    Quantity.DEBUG_REGISTER_6: (co.GET_DEBUGREG, co.DR6),
    Quantity.SHARING_FREED_PAGES: (hc.MEMORY_OP, co.XENMEM_get_sharing_freed_pages),
    Quantity.SHARING_SHARED_PAGES: (hc.MEMORY_OP, co.XENMEM_get_sharing_shared_pages),
    Quantity.HYPFS_VERSION: (co.HYPFS_OP, co.XEN_HYPFS_OP_get_version),
    # vcpuid by value in arg1, arg2 NULL.
    Quantity.VCPU_IS_UP: (co.VCPU_OP, co.VCPUOP_is_up),
    # arg1 points to a struct xen_kexec_status holding the image type (KEXEC_TYPE).
    Quantity.KEXEC_STATUS_DEFAULT: (co.KEXEC_OP, co.KEXEC_CMD_kexec_status),
    Quantity.KEXEC_STATUS_CRASH: (co.KEXEC_OP, co.KEXEC_CMD_kexec_status),
    Quantity.DOM0_CONSOLE_SIZE: (co.PLATFORM_OP, co.XENPF_get_dom0_console),
    Quantity.RESOURCE_OP_DONE: (co.PLATFORM_OP, co.XENPF_resource_op),
    # A sysctl: the cmd in a struct (xenprobe.xen.livepatch builds it), LIST inside it.
    Quantity.LIVEPATCH_LISTED: (hc.SYSCTL, co.XEN_SYSCTL_livepatch_op),
}

KEXEC_TYPE: dict[Quantity, int] = {
    Quantity.KEXEC_STATUS_DEFAULT: co.KEXEC_TYPE_DEFAULT,
    Quantity.KEXEC_STATUS_CRASH: co.KEXEC_TYPE_CRASH,
}

# The quantities whose arg0 is the address of a struct xen_platform_op carrying the cmd.
PLATFORM_STRUCT = (Quantity.DOM0_CONSOLE_SIZE, Quantity.RESOURCE_OP_DONE)

# Host-wide census quantities, probed where the hypervisor offers them: a release
# without the subop (the *2 ones before 4.20, hypfs before 4.14), a build without the
# feature, or a dom0 that cannot issue it (get_debugreg and kexec_op on PVH) answers
# -ENOSYS, and the quantity is absent there rather than an error. VCPU_IS_UP is asked
# of vCPU 0, which every domain has, and then probed once per vCPU of dom0 (PER_VCPU).
CENSUS = (Quantity.XEN_PAGESIZE, Quantity.BUILD_ID_SIZE, Quantity.EXTRAVERSION_LEN,
          Quantity.CAPABILITIES_LEN, Quantity.CHANGESET_LEN, Quantity.COMMANDLINE_LEN,
          Quantity.DEBUG_REGISTER_6, Quantity.SHARING_FREED_PAGES,
          Quantity.SHARING_SHARED_PAGES, Quantity.HYPFS_VERSION, Quantity.VCPU_IS_UP,
          Quantity.KEXEC_STATUS_DEFAULT, Quantity.KEXEC_STATUS_CRASH,
          Quantity.DOM0_CONSOLE_SIZE, Quantity.RESOURCE_OP_DONE)

# Census quantities read once per vCPU of the caller's own domain. Their number is
# dom0's vCPU count (getdomaininfo's max_vcpu_id + 1), which Xen bounds; the metrics
# carry no vCPU label (per quantity only), so the series count does not grow with it.
PER_VCPU = (Quantity.VCPU_IS_UP,)

# Answers that mean "not offered here" besides -ENOSYS, for the platform_op quantities:
# -EPERM from XSM (xsm_platform_op is XSM_PRIV; a FLASK policy may deny a command), and
# for get_dom0_console -ENODEV, Xen 4.22+'s answer without CONFIG_VIDEO
# (x86/platform_hypercall.c@RELEASE-4.22.0:924-927; before 4.22 such a build answers
# -ENOSYS, the case being compiled out).
_ABSENT: dict[Quantity, frozenset[int]] = {
    Quantity.DOM0_CONSOLE_SIZE: frozenset({errno.ENOSYS, errno.EPERM, errno.ENODEV}),
    Quantity.RESOURCE_OP_DONE: frozenset({errno.ENOSYS, errno.EPERM}),
}
_ENOSYS = frozenset({errno.ENOSYS})

# Host-wide census quantities whose request is a sysctl struct: xenprobe never puts
# one in a multicall, so they have no raw reading and are judged against the reference
# alone; probed where the hypervisor offers them, like CENSUS. Planned after every
# other probe.
UNBATCHED = (Quantity.LIVEPATCH_LISTED,)

PER_DOMAIN = (Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_RESERVATION,
              Quantity.MAXIMUM_GPFN)
# DOMID_SELF is probed where Xen accepts it (memory_op 3 and 4; 14 as well).
FOR_SELF = (Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_RESERVATION)


# What a domU sets by itself, and how, in one word (a metric label value). A guest that
# sets such a value where a dom0 tool's int path misreads it (an -errno alias, a sign
# flip, a truncation) makes that tool see a fake error or a wrong value: the operator's
# security concern.
GUEST_SET: dict[Quantity, str] = {
    # XENMEM_increase/decrease_reservation and populate_physmap on its own domain
    # (memory.c@RELEASE-4.17.0:1404-1406, XSM_TARGET: self allowed, :1435) move
    # tot_pages, up to the max_pages the toolstack set (page_alloc.c@RELEASE-4.17.0:2367).
    Quantity.CURRENT_RESERVATION: "balloon",  # up to the maximum the toolstack set
    # PV: (arch_get_max_pfn(d) ?: 1) - 1, the max_pfn the guest writes into its own
    # shared_info (x86/mm.c@RELEASE-4.17.0:489, asm/shared.h@RELEASE-4.17.0:10-16,70):
    # any 64-bit value. HVM/PVH: the p2m's max_mapped_pfn (mm.c:485), which the guest
    # raises by populating or mapping high gfns.
    Quantity.MAXIMUM_GPFN: "max_pfn_or_p2m",  # PV: shared_info max_pfn; HVM: high gfns
}


# Whom a guest-set value misleads when it is wrong at the source (a forged errno, a value
# outside 0..LONG_MAX): the dom0 tools that read it (consumer-census.md D1-D6; the PV
# paths read shared_info max_pfn - 1 itself). A guest can only aim it at its own domain.
MISLEADS: dict[Quantity, str] = {
    Quantity.MAXIMUM_GPFN: "xc_domain_maximum_gpfn's callers: dump-core and "
                           "xc_map_domain_meminfo (xen-hptool, xen-mfndump), HVM "
                           "save/migration, xen-access, VMI tools (LibVMI, DRAKVUF)",
}


class Subject(enum.StrEnum):
    HOST = "host"
    DOMAIN = "domain"
    SELF = "self"        # DOMID_SELF: the caller, i.e. dom0
    MISSING = "missing"  # a domain id that does not exist: the error path
    VCPU = "vcpu"        # one of the caller's own vCPUs (VCPUOP_is_up's vcpuid)


@dataclass(frozen=True, slots=True)
class Probe:
    quantity: Quantity
    subject: Subject
    domid: int | None = None  # the domid passed (DOMID_SELF for SELF)
    vcpu: int | None = None   # the vcpuid passed (VCPU only)

    @property
    def call(self) -> tuple[int, int]:
        return CALLS[self.quantity]

    @property
    def guest_set(self) -> bool:
        """A value a domU sets by itself (GUEST_SET), read for that domU (not dom0,
        whose values are its own kernel's)."""
        return (self.subject is Subject.DOMAIN and self.domid != 0
                and self.quantity in GUEST_SET)

    @property
    def label(self) -> str:
        if self.subject is Subject.DOMAIN:
            return f"dom{self.domid}"
        if self.subject is Subject.MISSING:
            return f"missing(dom{self.domid})"
        if self.subject is Subject.VCPU:
            return f"vcpu{self.vcpu}"
        return self.subject.value


def missing_domid(existing: Iterable[int]) -> int:
    """A domain id nobody uses: the lowest free one below the reserved range."""
    taken = set(existing)
    for domid in range(hc.DOMID_FIRST_RESERVED - 1, 0, -1):
        if domid not in taken:
            return domid
    raise RuntimeError("every domain id is in use")


def census_probe(q: Quantity) -> Probe:
    """The probe that tells whether the hypervisor offers a census quantity: vCPU 0 for
    the per-vCPU ones (every domain has it), the host for the rest."""
    return Probe(q, Subject.VCPU, vcpu=0) if q in PER_VCPU else Probe(q, Subject.HOST)


def plan(domids: Iterable[int], offered: Iterable[Quantity] = (),
         vcpus: int = 1) -> list[Probe]:
    """Every probe for a host with these domains, in a stable order; `offered` are the
    CENSUS quantities the hypervisor answers (see `offered`), `vcpus` the caller's own
    vCPU count (the PER_VCPU quantities are read for each)."""
    ids = sorted(set(domids))
    probes = [Probe(Quantity.XEN_VERSION, Subject.HOST),
              Probe(Quantity.MAXIMUM_RAM_PAGE, Subject.HOST)]
    have = set(offered)
    for q in CENSUS:
        if q in have and q in PER_VCPU:
            probes += [Probe(q, Subject.VCPU, vcpu=v) for v in range(max(1, vcpus))]
        elif q in have:
            probes.append(Probe(q, Subject.HOST))
    probes += [Probe(q, Subject.SELF, hc.DOMID_SELF) for q in FOR_SELF]
    probes += [Probe(q, Subject.DOMAIN, d) for d in ids for q in PER_DOMAIN]
    probes.append(Probe(Quantity.CURRENT_RESERVATION, Subject.MISSING, missing_domid(ids)))
    probes += [Probe(q, Subject.HOST) for q in UNBATCHED if q in have]
    return probes


def offered(raw: Iterable[int]) -> tuple[Quantity, ...]:
    """The CENSUS quantities whose raw results (in CENSUS order, signed 64-bit) are not
    -ENOSYS (nor another answer _ABSENT lists): those the hypervisor, its build and this
    dom0's type offer."""
    return tuple(q for q, r in zip(CENSUS, raw, strict=True)
                 if -r not in _ABSENT.get(q, _ENOSYS))
