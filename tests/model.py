# SPDX-License-Identifier: GPL-2.0-only
"""What each layer should return on a mock scenario, predicted from the scenario file and
the documented conversions (tests/conversions.py), independently of xenprobe's classifier.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from tests.conversions import (
    INT32_MAX,
    U32,
    U64,
    compat_clamp,
    glibc_ioctl,
    glibc_syscall,
    pvops_kernel,
    s32,
    s64,
    xenlinux_kernel,
)
from xenprobe.mock.scenario import Scenario
from xenprobe.xen.reading import Reading

DOMID_SELF = 0x7FF0


@dataclass(frozen=True)
class Expected:
    raw: int                  # the hypervisor's 64-bit result, signed
    true_value: int | None    # what the quantity really is (None for error paths)
    syscall: Reading
    ioctl: Reading


# The census quantities as a census scenario defines them (native/mock/census.c): a
# PV dom0's resting DR6, a default build without memory sharing.
CENSUS_CONSTANTS = {"xen_pagesize": 4096, "debug_register_6": 0xFFFF0FF0,
                    "sharing_freed_pages": 0, "sharing_shared_pages": 0,
                    "hypfs_version": 1, "dom0_console_size": 40, "resource_op_done": 1,
                    "livepatch_listed": 0}


def true_value(s: Scenario, quantity: str, domid: int | None,
               vcpu: int | None = None) -> int | None:
    """The quantity as the scenario defines it; None when the domain does not exist."""
    if quantity == "vcpu_is_up":
        # A PV kernel takes its offline vCPUs down (VCPUOP_down); a PVH one does not.
        me = next(d for d in s.domains if d.domid == s.self_domid)
        assert vcpu is not None and vcpu < me.vcpus
        return 0 if vcpu in me.offline_vcpus and not me.hvm else 1
    if quantity in ("kexec_status_default", "kexec_status_crash"):
        # The type's slot bit: 1 after the one load the scenario names.
        return int(quantity.removeprefix("kexec_status_") in s.kexec_loaded)
    if quantity == "xen_version":
        return (s.release.major << 16) | s.release.minor
    if quantity in CENSUS_CONSTANTS:
        return CENSUS_CONSTANTS[quantity]
    if quantity == "build_id_size":
        return s.build_id_size
    lengths = {"extraversion_len": s.extraversion, "capabilities_len": s.capabilities,
               "changeset_len": s.changeset, "commandline_len": s.commandline}
    if quantity in lengths:
        return len(lengths[quantity])
    if quantity == "maximum_ram_page":
        return s.max_page
    target = s.self_domid if domid == DOMID_SELF else domid
    dom = next((d for d in s.domains if d.domid == target), None)
    if dom is None:
        return None
    return {"current_reservation": dom.tot_pages, "maximum_reservation": dom.max_pages,
            "maximum_gpfn": dom.max_gpfn}[quantity]


def hypervisor_result(s: Scenario, quantity: str, value: int | None) -> int:
    if value is None:
        return -errno.ESRCH
    r = value
    if s.hypervisor_bits == 32:
        r = s32(r)
    if s.compat_clamp and quantity in ("maximum_ram_page", "current_reservation",
                                       "maximum_reservation", "maximum_gpfn"):
        r = compat_clamp(r)
    return s64(r)


def expect(s: Scenario, quantity: str, domid: int | None,
           vcpu: int | None = None) -> Expected:
    value = true_value(s, quantity, domid, vcpu)
    raw = hypervisor_result(s, quantity, value)
    kernel = pvops_kernel(raw) if s.driver == "pvops" else xenlinux_kernel(raw)
    return Expected(raw, value, glibc_syscall(kernel), glibc_ioctl(kernel))


def source_verdict(s: Scenario, quantity: str, domid: int | None, raw: int) -> str | None:
    """The raw result by itself, against Xen's convention: in the mock only a PV
    guest's max_pfn (its maximum_gpfn) can break it, and such a domain exists, so any
    errno there is forged (domain_get_maximum_gpfn has no error path: xen/abi/errnos.py);
    a negative value that is no errno is out of range."""
    if raw < -4095:
        return "out_of_range"
    if -4095 <= raw <= -1 and quantity == "maximum_gpfn" and any(
            d.domid == domid for d in s.domains):
        return "forged_errno"
    return None


def layer_verdict(raw: int, r: Reading, forged: bool = False) -> str:
    """The verdict a layer reading deserves against the raw result, by case; a forged
    error handed on unchanged is passed_forged."""
    if -4095 <= raw <= -1:
        if not r.failed:
            return "lost_error"
        if r.errno == -raw:
            return "passed_forged" if forged else "match"
        return "changed_error"
    u = raw % U64
    if not r.failed and r.value % U64 == u:
        return "match"
    if r.failed:
        return "aliased_errno"
    # No layer below the hypervisor clamps; the compat clamp happens inside Xen.
    return "sign_flipped" if u < U32 else "truncated"


def raw_verdict(e: Expected) -> str:
    """The raw result against the quantity's real value."""
    if e.true_value is None:
        return "match" if e.raw == -errno.ESRCH else "lost_error"
    if e.raw % U64 == e.true_value:
        return "match"
    if -4095 <= e.raw <= -1:
        return "aliased_errno"
    if e.raw == INT32_MAX:
        return "clamped"
    return "sign_flipped" if e.true_value < U32 else "truncated"
