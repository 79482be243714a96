# SPDX-License-Identifier: GPL-2.0-only
"""What libxenctrl 4.17 returns for each probe on a mock scenario, predicted from the
scenario and libxc's documented code paths (xen-abi.md 6.2, tools/libs/ctrl at
RELEASE-4.17.0), independently of xenprobe's libxc layer and classifier.

Paths, per function:
    xc_version             xencall2 -> ioctl(): an int, -1/errno on failure (version,
                           pagesize)
    xc_memory_op           one-entry multicall; result > ~0xfff -> -1/errno, else the long
    xc_maximum_ram_page,   xc_memory_op; rc >= 0 -> *out = rc, return 0; else return (int)rc
    xc_domain_maximum_gpfn
    xc_get_tot_pages       xc_domain_getinfo(domid, 1): domctl getdomaininfo, which on
                           <= 4.17 hypervisors answers for the next domain >= domid; a
                           different domid -> -1 with errno untouched
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from tests.conversions import U64, glibc_ioctl, pvops_kernel, s32, s64, xenlinux_kernel
from tests.model import hypervisor_result, true_value
from xenprobe.mock.scenario import Domain, Scenario
from xenprobe.xen.abi.releases import by_name
from xenprobe.xen.reading import Reading

LIB = by_name("4.17")  # the libxenctrl the tests download
DOMID_SELF = 0x7FF0
DOMID_FIRST_RESERVED = 0x7FF0
OUT_PARAM = ("maximum_ram_page", "maximum_gpfn")
# xc_version with a NULL arg: XENVER_version and XENVER_pagesize (xc_private.c@4.17:500-523).
XC_VERSION = {"xen_version": 0, "xen_pagesize": 7}
# Census quantities libxenctrl has no call for (build_id's xc_version case reads len
# through the pointer; the *2 subops have none; get_debugreg and hypfs_op are not libxc's).
NO_LIBXC_CALL = ("build_id_size", "extraversion_len", "capabilities_len", "changeset_len",
                 "commandline_len", "debug_register_6", "hypfs_version", "vcpu_is_up",
                 "dom0_console_size")
# xc_kexec_status(xch, type): xencall2 -> ioctl(), an int (xc_kexec.c@4.17:130-152).
KEXEC_STATUS = {"kexec_status_default": 0, "kexec_status_crash": 1}
# xc_resource_op with one op: one platform_op, its int rc returned (xc_resource.c@4.17:22-41).
PLATFORM = {"resource_op_done": 61}


@dataclass(frozen=True)
class Call:
    """The hypercall libxc makes for one probe, as the mock's log should show it."""

    op: int                  # 17 xen_version, 13 multicall (wrapping memory_op), 36 domctl
    subop: int               # XENVER / XENMEM / XEN_DOMCTL number
    domain: int | None       # the domid the hypervisor read, if any
    result: int              # the hypervisor's result for the inner call


def memory_op_result(s: Scenario, quantity: str, domid: int | None) -> int:
    """The hypervisor's 64-bit result, with the dummy XSM policy of a domU (only its
    own domain's reservation is visible)."""
    value = true_value(s, quantity, domid)
    if quantity != "maximum_ram_page" and value is not None and s.role == "domU":
        target = s.self_domid if domid == DOMID_SELF else domid
        if target != s.self_domid:
            return -errno.EPERM
    return hypervisor_result(s, quantity, value)


def _xc_memory_op(raw: int) -> tuple[int, int]:
    """(return, errno) of xc_memory_op: all 64 bits of the multicall entry's result."""
    u = raw % U64
    if u > U64 - 1 - 0xFFF:
        return -1, U64 - u
    return s64(u), 0


def _getdomaininfo(s: Scenario, domid: int) -> Domain | int:
    """What domctl getdomaininfo gives libxc 4.17: a domain record or an errno."""
    if s.domctl_interface != LIB.domctl:
        return errno.EACCES  # libxc stamps 4.17's interface version
    exact = next((d for d in s.domains if d.domid == domid), None)
    if s.release.getdomaininfo_exact and exact is None:
        return errno.ESRCH
    if s.role == "domU":
        return errno.EPERM
    if exact is not None:
        return exact
    if domid >= DOMID_FIRST_RESERVED:
        return errno.EINVAL
    following = next((d for d in s.domains if d.domid >= domid), None)
    return following if following is not None else errno.ESRCH


def expected(s: Scenario, quantity: str, subject: str, domid: int | None) -> Reading | None:
    """The reading xenprobe's libxc layer should report; None where it offers none."""
    if quantity in NO_LIBXC_CALL:
        return None
    if quantity == "livepatch_listed":
        # xc_livepatch_list_get_sizes: LIST with nr 0 (xc_misc.c@RELEASE-4.17.0:653-679),
        # do_sysctl's int, 0 entries copied; planned only where LIST answers.
        return Reading(true_value(s, quantity, None) or 0, 0, 32)
    if quantity in XC_VERSION or quantity in KEXEC_STATUS or quantity in PLATFORM:
        raw = hypervisor_result(s, quantity, true_value(s, quantity, None))
        kernel = pvops_kernel(raw) if s.driver == "pvops" else xenlinux_kernel(raw)
        return glibc_ioctl(kernel)
    if quantity == "current_reservation" and subject != "self":
        assert domid is not None
        info = _getdomaininfo(s, domid)
        if isinstance(info, int):
            return Reading(-1, info, 64)
        if info.domid != domid:
            return Reading(-1, 0, 64)  # libxc's domid check; errno was never set
        return Reading(s64(info.tot_pages), 0, 64)
    ret, err = _xc_memory_op(memory_op_result(s, quantity, domid))
    if quantity in OUT_PARAM:
        if ret >= 0:
            return Reading(ret, 0, 64)  # written through the unsigned long pointer
        if err:
            return Reading(-1, err, 32)
        if s32(ret) == 0:
            # A negative long whose low 32 bits are 0 (a result out of range at the
            # source) comes back as the int 0, success: the unsigned long was never
            # written, and the caller reads what it held (xenprobe's layer: 0).
            return Reading(0, 0, 64)
        return Reading(s32(ret), 0, 32)
    return Reading(ret, err, 64)


def call(s: Scenario, quantity: str, subject: str, domid: int | None) -> Call:
    """The one hypercall libxc 4.17 makes for a probe."""
    if quantity in XC_VERSION:
        return Call(17, XC_VERSION[quantity], None,
                    hypervisor_result(s, quantity, true_value(s, quantity, None)))
    if quantity in KEXEC_STATUS:
        return Call(37, 6, None, hypervisor_result(s, quantity, true_value(s, quantity, None)))
    if quantity in PLATFORM:
        return Call(7, PLATFORM[quantity], None,
                    hypervisor_result(s, quantity, true_value(s, quantity, None)))
    if quantity == "current_reservation" and subject != "self":
        assert domid is not None
        info = _getdomaininfo(s, domid)
        return Call(36, 5, domid, -info if isinstance(info, int) else 0)
    subop = {"maximum_ram_page": 2, "current_reservation": 3, "maximum_reservation": 4,
             "maximum_gpfn": 14, "sharing_freed_pages": 18,
             "sharing_shared_pages": 19}[quantity]
    domain = None if quantity == "maximum_ram_page" else domid
    return Call(13, subop, domain, memory_op_result(s, quantity, domid))


def verdict(raw: Reading, reading: Reading) -> str:
    """The verdict a libxc reading deserves against the raw 64-bit result, for the cases
    libxc 4.17 produces on the shipped scenarios."""
    if raw.failed:
        if not reading.failed:
            return "lost_error"
        return "match" if reading.errno == raw.errno else "changed_error"
    if not reading.failed:
        if reading.value % U64 == raw.value % U64:
            return "match"
        if reading.value % U64 == raw.value % (1 << 32):
            return "truncated"  # only the low 32 bits survived (out of range at the source)
        raise AssertionError(f"model has no verdict for value {reading} against {raw}")
    # A failure where the hypervisor gave a value: only an errno-sized value could alias.
    low = raw.value % (1 << 32)
    aliased = low == (1 << 32) - reading.errno or raw.value % U64 == U64 - reading.errno
    return "aliased_errno" if aliased else "other"


def via_reference(quantity: str, subject: str) -> bool:
    """libxc reads a domain's current pages with xc_get_tot_pages, i.e. through domctl
    getdomaininfo: the reference's own hypercall, not memory_op."""
    return quantity == "current_reservation" and subject != "self"


def reference_reading(s: Scenario, domid: int | None) -> Reading:
    """getdomaininfo's tot_pages for a domain, or ESRCH when it does not exist (the
    truth xenprobe's reference holds for that probe)."""
    dom = next((d for d in s.domains if d.domid == domid), None)
    return Reading(dom.tot_pages, 0, 64) if dom else Reading(-errno.ESRCH, errno.ESRCH, 64)
