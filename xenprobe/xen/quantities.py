# SPDX-License-Identifier: GPL-2.0-only
"""What xenprobe probes: each quantity, the hypercall that reads it, and for whom."""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable, Iterable
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


class Scope(enum.Enum):
    """Whom a quantity is read for, and so where the plan puts its probes."""

    HOST = "host"            # once per sweep, on every host
    CENSUS = "census"        # once, host-wide, where the hypervisor offers it (`offered`)
    PER_VCPU = "per_vcpu"    # once per vCPU of the caller's own domain, where offered
    DOMAIN = "domain"        # once per domain (and for DOMID_SELF where `for_self`)
    UNBATCHED = "unbatched"  # host-wide, where offered; its call carries a struct (below)


class Argument(enum.Enum):
    """What the call's argument after the cmd is (probe.calls builds it)."""

    NONE = "none"          # nothing: NULL (the length queries of build-id and the *2 subops)
    DOMID = "domid"        # the address of a domid_t holding the probe's domain
    VCPU = "vcpu"          # the vcpuid by value, arg2 NULL (VCPUOP_is_up)
    KEXEC = "kexec"        # the address of a struct xen_kexec_status {uint8_t type}
    PLATFORM = "platform"  # arg0 is the address of a struct xen_platform_op carrying the cmd
    REQUEST = "request"    # a struct the layers issue whole (Layer.read_request)


_ENOSYS = frozenset({errno.ENOSYS})


@dataclass(frozen=True, slots=True)
class Record:
    """One quantity: the call that reads it, whom it is read for, how its argument is
    made, and what a guest has to do with it. Its reference is in
    xenprobe.probe.references.REFERENCES, who reads it in xenprobe.probe.impact.ROWS."""

    quantity: Quantity
    call: tuple[int, int]         # (hypercall, cmd)
    scope: Scope
    # Its census group (docs/census.md): one per hypercall family and purpose, which an
    # operator can leave out of the exports (exporter.metrics.collector_groups).
    group: str
    argument: Argument = Argument.NONE
    for_self: bool = False        # DOMAIN: probed for DOMID_SELF too, where Xen accepts it
    missing: bool = False         # DOMAIN: probed for a domain id nobody has (the error path)
    kexec_type: int | None = None  # KEXEC: the image type its struct holds
    # CENSUS: the answers that mean "not offered here", besides a value.
    absent: frozenset[int] = _ENOSYS
    # What a domU sets by itself, and how, in one word (a metric label value), or None.
    guest_set: str | None = None
    # Whom a wrong value at the source misleads (check's output), or None.
    misleads: str | None = None

    @property
    def batched(self) -> bool:
        """Read by value, in the multicall batch (every scope but UNBATCHED)."""
        return self.scope is not Scope.UNBATCHED

    @property
    def census(self) -> bool:
        """Probed where the hypervisor offers it, not on every host."""
        return self.scope in (Scope.CENSUS, Scope.PER_VCPU, Scope.UNBATCHED)


def _row(r: Record) -> tuple[Quantity, Record]:
    return r.quantity, r


# One record per quantity, in plan order (`plan`). Adding a quantity is a member of
# Quantity, its row here, its reference (probe.references), its readers (probe.impact),
# its model in the mock host and its test: docs/quantities.md.
RECORDS: dict[Quantity, Record] = dict(map(_row, (
    Record(Quantity.XEN_VERSION, (hc.XEN_VERSION, hc.XENVER_version), Scope.HOST, "version"),
    Record(Quantity.MAXIMUM_RAM_PAGE, (hc.MEMORY_OP, hc.XENMEM_maximum_ram_page),
           Scope.HOST, "memory"),
    # The census's other read-only paths (tests.census), host-wide, by value. A release
    # without the subop (the *2 ones before 4.20, hypfs before 4.14), a build without
    # the feature, or a dom0 that cannot issue it (get_debugreg and kexec_op on PVH)
    # answers -ENOSYS: the quantity is absent there rather than an error.
    Record(Quantity.XEN_PAGESIZE, (hc.XEN_VERSION, co.XENVER_pagesize), Scope.CENSUS,
           "version"),
    # A NULL argument: the length query of the build-id and *2 subops.
    Record(Quantity.BUILD_ID_SIZE, (hc.XEN_VERSION, co.XENVER_build_id), Scope.CENSUS,
           "version"),
    Record(Quantity.EXTRAVERSION_LEN, (hc.XEN_VERSION, co.XENVER_extraversion2),
           Scope.CENSUS, "version"),
    Record(Quantity.CAPABILITIES_LEN, (hc.XEN_VERSION, co.XENVER_capabilities2),
           Scope.CENSUS, "version"),
    Record(Quantity.CHANGESET_LEN, (hc.XEN_VERSION, co.XENVER_changeset2), Scope.CENSUS,
           "version"),
    Record(Quantity.COMMANDLINE_LEN, (hc.XEN_VERSION, co.XENVER_commandline2),
           Scope.CENSUS, "version"),
    Record(Quantity.DEBUG_REGISTER_6, (co.GET_DEBUGREG, co.DR6), Scope.CENSUS, "debugreg"),
    Record(Quantity.SHARING_FREED_PAGES, (hc.MEMORY_OP, co.XENMEM_get_sharing_freed_pages),
           Scope.CENSUS, "sharing"),
    Record(Quantity.SHARING_SHARED_PAGES,
           (hc.MEMORY_OP, co.XENMEM_get_sharing_shared_pages), Scope.CENSUS, "sharing"),
    Record(Quantity.HYPFS_VERSION, (co.HYPFS_OP, co.XEN_HYPFS_OP_get_version), Scope.CENSUS,
           "hypfs"),
    # Asked of vCPU 0, which every domain has, then read once per vCPU of dom0. Their
    # number is dom0's vCPU count (getdomaininfo's max_vcpu_id + 1), which Xen bounds;
    # the metrics carry no vCPU label, so the series count does not grow with it.
    Record(Quantity.VCPU_IS_UP, (co.VCPU_OP, co.VCPUOP_is_up), Scope.PER_VCPU, "vcpu",
           Argument.VCPU),
    # kexec_op status, one per image type (PV only).
    Record(Quantity.KEXEC_STATUS_DEFAULT, (co.KEXEC_OP, co.KEXEC_CMD_kexec_status),
           Scope.CENSUS, "kexec", Argument.KEXEC, kexec_type=co.KEXEC_TYPE_DEFAULT),
    Record(Quantity.KEXEC_STATUS_CRASH, (co.KEXEC_OP, co.KEXEC_CMD_kexec_status),
           Scope.CENSUS, "kexec", Argument.KEXEC, kexec_type=co.KEXEC_TYPE_CRASH),
    # platform_op: its arg0 points to a struct (platform_requests.py). Not offered also
    # answers -EPERM from XSM (xsm_platform_op is XSM_PRIV; a FLASK policy may deny a
    # command), and for get_dom0_console -ENODEV, Xen 4.22+'s answer without
    # CONFIG_VIDEO (x86/platform_hypercall.c@RELEASE-4.22.0:924-927; before 4.22 such a
    # build answers -ENOSYS, the case being compiled out).
    Record(Quantity.DOM0_CONSOLE_SIZE, (co.PLATFORM_OP, co.XENPF_get_dom0_console),
           Scope.CENSUS, "platform", Argument.PLATFORM,
           absent=frozenset({errno.ENOSYS, errno.EPERM, errno.ENODEV})),
    Record(Quantity.RESOURCE_OP_DONE, (co.PLATFORM_OP, co.XENPF_resource_op),
           Scope.CENSUS, "platform", Argument.PLATFORM,
           absent=frozenset({errno.ENOSYS, errno.EPERM})),
    # Per domain, a pointer to a domid_t. DOMID_SELF is probed where Xen accepts it
    # (memory_op 3 and 4; 14 as well).
    # XENMEM_increase/decrease_reservation and populate_physmap on its own domain
    # (memory.c@RELEASE-4.17.0:1404-1406, XSM_TARGET: self allowed, :1435) move
    # tot_pages, up to the max_pages the toolstack set (page_alloc.c@RELEASE-4.17.0:2367).
    Record(Quantity.CURRENT_RESERVATION, (hc.MEMORY_OP, hc.XENMEM_current_reservation),
           Scope.DOMAIN, "memory", Argument.DOMID, for_self=True, missing=True,
           guest_set="balloon"),  # up to the maximum the toolstack set
    Record(Quantity.MAXIMUM_RESERVATION, (hc.MEMORY_OP, hc.XENMEM_maximum_reservation),
           Scope.DOMAIN, "memory", Argument.DOMID, for_self=True),
    # PV: (arch_get_max_pfn(d) ?: 1) - 1, the max_pfn the guest writes into its own
    # shared_info (x86/mm.c@RELEASE-4.17.0:489, asm/shared.h@RELEASE-4.17.0:10-16,70):
    # any 64-bit value. HVM/PVH: the p2m's max_mapped_pfn (mm.c:485), which the guest
    # raises by populating or mapping high gfns. A wrong value at the source misleads
    # the dom0 tools that read it (consumer-census.md D1-D6; the PV paths read
    # shared_info max_pfn - 1 itself); a guest can only aim it at its own domain.
    Record(Quantity.MAXIMUM_GPFN, (hc.MEMORY_OP, hc.XENMEM_maximum_gpfn), Scope.DOMAIN,
           "memory", Argument.DOMID,
           guest_set="max_pfn_or_p2m",  # PV: shared_info max_pfn; HVM: the p2m's gfns
           misleads="xc_domain_maximum_gpfn's callers: dump-core and "
                    "xc_map_domain_meminfo (xen-hptool, xen-mfndump), HVM "
                    "save/migration, xen-access, VMI tools (LibVMI, DRAKVUF)"),
    # A sysctl: the cmd in a struct (xenprobe.xen.livepatch builds it), LIST inside it.
    # xenprobe never puts one in a multicall, so it has no raw reading and is judged
    # against the reference alone; planned after every other probe.
    Record(Quantity.LIVEPATCH_LISTED, (hc.SYSCTL, co.XEN_SYSCTL_livepatch_op),
           Scope.UNBATCHED, "livepatch", Argument.REQUEST),
)))


def _where(test: Callable[[Record], bool]) -> tuple[Quantity, ...]:
    return tuple(q for q, r in RECORDS.items() if test(r))


# Views of RECORDS, as the rest of xenprobe and its tests name them. Code that must see
# every record, a test's too, reads RECORDS itself (`census`, `plan`, `offered`).
CALLS: dict[Quantity, tuple[int, int]] = {q: r.call for q, r in RECORDS.items()}
KEXEC_TYPE: dict[Quantity, int] = {q: r.kexec_type for q, r in RECORDS.items()
                                   if r.kexec_type is not None}
PLATFORM_STRUCT = _where(lambda r: r.argument is Argument.PLATFORM)
CENSUS = _where(lambda r: r.scope in (Scope.CENSUS, Scope.PER_VCPU))
PER_VCPU = _where(lambda r: r.scope is Scope.PER_VCPU)
UNBATCHED = _where(lambda r: r.scope is Scope.UNBATCHED)
PER_DOMAIN = _where(lambda r: r.scope is Scope.DOMAIN)
FOR_SELF = _where(lambda r: r.for_self)
# A guest that sets such a value where a dom0 tool's int path misreads it (an -errno
# alias, a sign flip, a truncation) makes that tool see a fake error or a wrong value:
# the operator's security concern.
GUEST_SET: dict[Quantity, str] = {q: r.guest_set for q, r in RECORDS.items()
                                  if r.guest_set is not None}
MISLEADS: dict[Quantity, str] = {q: r.misleads for q, r in RECORDS.items()
                                 if r.misleads is not None}


def census() -> tuple[Quantity, ...]:
    """The by-value census quantities (CENSUS, PER_VCPU), in RECORDS order: what the
    sweep asks once per host to learn which the hypervisor offers."""
    return tuple(q for q, r in RECORDS.items() if r.census and r.batched)


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
        return RECORDS[self.quantity].call

    @property
    def guest_set(self) -> bool:
        """A value a domU sets by itself (Record.guest_set), read for that domU (not
        dom0, whose values are its own kernel's)."""
        return (self.subject is Subject.DOMAIN and self.domid != 0
                and RECORDS[self.quantity].guest_set is not None)

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
    if RECORDS[q].scope is Scope.PER_VCPU:
        return Probe(q, Subject.VCPU, vcpu=0)
    return Probe(q, Subject.HOST)


def plan(domids: Iterable[int], offered: Iterable[Quantity] = (),
         vcpus: int = 1) -> list[Probe]:
    """Every probe for a host with these domains, in a stable order (RECORDS' within
    each part): the host's, the offered census ones (`offered`; the PER_VCPU ones for
    each of the caller's `vcpus`), DOMID_SELF's, each domain's, the missing domain's,
    then the UNBATCHED ones."""
    ids = sorted(set(domids))
    have = set(offered)
    rows = RECORDS.values()
    probes = [Probe(r.quantity, Subject.HOST) for r in rows if r.scope is Scope.HOST]
    for r in rows:
        if r.quantity in have and r.scope is Scope.PER_VCPU:
            probes += [Probe(r.quantity, Subject.VCPU, vcpu=v) for v in range(max(1, vcpus))]
        elif r.quantity in have and r.scope is Scope.CENSUS:
            probes.append(Probe(r.quantity, Subject.HOST))
    domain = [r.quantity for r in rows if r.scope is Scope.DOMAIN]
    probes += [Probe(r.quantity, Subject.SELF, hc.DOMID_SELF) for r in rows if r.for_self]
    probes += [Probe(q, Subject.DOMAIN, d) for d in ids for q in domain]
    missing = missing_domid(ids)
    probes += [Probe(r.quantity, Subject.MISSING, missing) for r in rows if r.missing]
    probes += [Probe(r.quantity, Subject.HOST) for r in rows
               if r.scope is Scope.UNBATCHED and r.quantity in have]
    return probes


def offered(raw: Iterable[int]) -> tuple[Quantity, ...]:
    """The `census()` quantities whose raw results (in that order, signed 64-bit) are
    not -ENOSYS (nor another answer their Record.absent lists): those the hypervisor,
    its build and this dom0's type offer."""
    return tuple(q for q, r in zip(census(), raw, strict=True)
                 if -r not in RECORDS[q].absent)
