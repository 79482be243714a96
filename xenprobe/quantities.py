# SPDX-License-Identifier: GPL-2.0-only
"""What xenprobe probes: each quantity, the hypercall that reads it, and for whom."""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterable
from dataclasses import dataclass

from xenprobe.abi import census_ops as co
from xenprobe.abi import hypercalls as hc


class Quantity(enum.StrEnum):
    MAXIMUM_RAM_PAGE = "maximum_ram_page"
    CURRENT_RESERVATION = "current_reservation"
    MAXIMUM_RESERVATION = "maximum_reservation"
    MAXIMUM_GPFN = "maximum_gpfn"
    XEN_VERSION = "xen_version"
    # The census's other read-only paths (xenprobe.census), host-wide, by value.
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
    # A sysctl: the cmd in a struct (xenprobe.livepatch builds it), LIST inside it.
    Quantity.LIVEPATCH_LISTED: (hc.SYSCTL, co.XEN_SYSCTL_livepatch_op),
}

# Host-wide census quantities, probed where the hypervisor offers them: a release
# without the subop (the *2 ones before 4.20, hypfs before 4.14), a build without the
# feature, or a dom0 that cannot issue it (get_debugreg on PVH) answers -ENOSYS, and
# the quantity is absent there rather than an error.
CENSUS = (Quantity.XEN_PAGESIZE, Quantity.BUILD_ID_SIZE, Quantity.EXTRAVERSION_LEN,
          Quantity.CAPABILITIES_LEN, Quantity.CHANGESET_LEN, Quantity.COMMANDLINE_LEN,
          Quantity.DEBUG_REGISTER_6, Quantity.SHARING_FREED_PAGES,
          Quantity.SHARING_SHARED_PAGES, Quantity.HYPFS_VERSION)

# Host-wide census quantities whose request is a struct (a sysctl): never in a
# multicall, so they have no raw reading and are judged against the reference alone;
# probed where the hypervisor offers them, like CENSUS. Planned after every other probe.
BY_STRUCT = (Quantity.LIVEPATCH_LISTED,)

PER_DOMAIN = (Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_RESERVATION,
              Quantity.MAXIMUM_GPFN)
# DOMID_SELF is probed where Xen accepts it (memory_op 3 and 4; 14 as well).
FOR_SELF = (Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_RESERVATION)


# What a domU sets by itself, and how (xen-project/xen). A guest that sets such a value
# where a dom0 tool's int path misreads it (an -errno alias, a sign flip, a truncation)
# makes that tool see a fake error or a wrong value: the operator's security concern.
GUEST_SET: dict[Quantity, str] = {
    # XENMEM_increase/decrease_reservation and populate_physmap on its own domain
    # (memory.c@RELEASE-4.17.0:1404-1406, XSM_TARGET: self allowed, :1435) move
    # tot_pages, up to the max_pages the toolstack set (page_alloc.c@RELEASE-4.17.0:2367).
    Quantity.CURRENT_RESERVATION: "the guest balloons itself, up to its maximum",
    # PV: (arch_get_max_pfn(d) ?: 1) - 1, the max_pfn the guest writes into its own
    # shared_info (x86/mm.c@RELEASE-4.17.0:489, asm/shared.h@RELEASE-4.17.0:10-16,70):
    # any 64-bit value. HVM/PVH: the p2m's max_mapped_pfn (mm.c:485), which the guest
    # raises by populating or mapping high gfns.
    Quantity.MAXIMUM_GPFN: "the guest sets it (PV: shared_info max_pfn; HVM: high gfns)",
}


class Subject(enum.StrEnum):
    HOST = "host"
    DOMAIN = "domain"
    SELF = "self"        # DOMID_SELF: the caller, i.e. dom0
    MISSING = "missing"  # a domain id that does not exist: the error path


@dataclass(frozen=True, slots=True)
class Probe:
    quantity: Quantity
    subject: Subject
    domid: int | None = None  # the domid passed (DOMID_SELF for SELF)

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
        return self.subject.value


def missing_domid(existing: Iterable[int]) -> int:
    """A domain id nobody uses: the lowest free one below the reserved range."""
    taken = set(existing)
    for domid in range(hc.DOMID_FIRST_RESERVED - 1, 0, -1):
        if domid not in taken:
            return domid
    raise RuntimeError("every domain id is in use")


def plan(domids: Iterable[int], offered: Iterable[Quantity] = ()) -> list[Probe]:
    """Every probe for a host with these domains, in a stable order; `offered` are the
    CENSUS quantities the hypervisor answers (see `offered`)."""
    ids = sorted(set(domids))
    probes = [Probe(Quantity.XEN_VERSION, Subject.HOST),
              Probe(Quantity.MAXIMUM_RAM_PAGE, Subject.HOST)]
    have = set(offered)
    probes += [Probe(q, Subject.HOST) for q in CENSUS if q in have]
    probes += [Probe(q, Subject.SELF, hc.DOMID_SELF) for q in FOR_SELF]
    probes += [Probe(q, Subject.DOMAIN, d) for d in ids for q in PER_DOMAIN]
    probes.append(Probe(Quantity.CURRENT_RESERVATION, Subject.MISSING, missing_domid(ids)))
    probes += [Probe(q, Subject.HOST) for q in BY_STRUCT if q in have]
    return probes


def offered(raw: Iterable[int]) -> tuple[Quantity, ...]:
    """The CENSUS quantities whose raw results (in CENSUS order, signed 64-bit) are not
    -ENOSYS: those the hypervisor, its build and this dom0's type offer."""
    return tuple(q for q, r in zip(CENSUS, raw, strict=True) if r != -errno.ENOSYS)
