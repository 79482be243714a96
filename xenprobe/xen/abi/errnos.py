# SPDX-License-Identifier: GPL-2.0-only
"""The errors each probed (hypercall, subop) can return, per release, as data.

Read like a Xen header: one row per (hypercall, subop, errno), the releases it holds in,
and where Xen's code returns it. Read at RELEASE-4.14.0, RELEASE-4.17.0 and
RELEASE-4.20.0 (paths below xen/, `@4.NN` short for the tag); `can_return` answers for
those releases only, and None for any other: a release not read is not guessed at.

A subop is the whole request word as issued: memory_op's continuation bits (cmd >> 6)
make another request (native allow-list), so its start_extent -EINVAL is not in these
sets. Every argument is counted, not only xenprobe's own: the watch checks other
programs' calls with the same sets (XENVER_pagesize with a buffer, a kexec type past
1). What holds for every call of a hypercall (its XSM check, the copy of its argument)
is repeated on each of its rows, so a row says everything one subop can return.

The errnos of the security modules: the default (dummy) module denies with -EPERM
(xsm_default_action, include/xsm/dummy.h@4.14:94,97 @4.17:100,103 @4.20:100,103);
FLASK denies with -EACCES (avc_has_perm_noaudit, xsm/flask/avc.c@4.14:762 @4.17:762
@4.20:762), or -EPERM for a command its policy does not know.
"""

from __future__ import annotations

import errno as e
from dataclasses import dataclass

from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc

# The releases whose source these rows were read against.
READ: tuple[tuple[int, int], ...] = ((4, 14), (4, 17), (4, 20))
_ALL = frozenset(READ)
_FROM_4_20 = frozenset({(4, 20)})
_BEFORE_4_20 = frozenset({(4, 14), (4, 17)})


@dataclass(frozen=True, slots=True)
class Path:
    """One way a (hypercall, subop) fails: -errno, the releases read where it can,
    and where the code decides."""

    op: int
    subop: int
    errno: int
    releases: frozenset[tuple[int, int]]
    where: str


# The probed pairs, by name (quantities.CALLS; tests/test_errnos.py keeps them in step).
PAIRS: dict[tuple[int, int], str] = {
    (hc.MEMORY_OP, hc.XENMEM_maximum_ram_page): "XENMEM_maximum_ram_page",
    (hc.MEMORY_OP, hc.XENMEM_current_reservation): "XENMEM_current_reservation",
    (hc.MEMORY_OP, hc.XENMEM_maximum_reservation): "XENMEM_maximum_reservation",
    (hc.MEMORY_OP, hc.XENMEM_maximum_gpfn): "XENMEM_maximum_gpfn",
    (hc.MEMORY_OP, co.XENMEM_get_sharing_freed_pages): "XENMEM_get_sharing_freed_pages",
    (hc.MEMORY_OP, co.XENMEM_get_sharing_shared_pages): "XENMEM_get_sharing_shared_pages",
    (hc.XEN_VERSION, hc.XENVER_version): "XENVER_version",
    (hc.XEN_VERSION, co.XENVER_pagesize): "XENVER_pagesize",
    (hc.XEN_VERSION, co.XENVER_build_id): "XENVER_build_id",
    (hc.XEN_VERSION, co.XENVER_extraversion2): "XENVER_extraversion2",
    (hc.XEN_VERSION, co.XENVER_capabilities2): "XENVER_capabilities2",
    (hc.XEN_VERSION, co.XENVER_changeset2): "XENVER_changeset2",
    (hc.XEN_VERSION, co.XENVER_commandline2): "XENVER_commandline2",
    (co.GET_DEBUGREG, co.DR6): "get_debugreg(DR6)",
    (co.HYPFS_OP, co.XEN_HYPFS_OP_get_version): "XEN_HYPFS_OP_get_version",
    (co.VCPU_OP, co.VCPUOP_is_up): "VCPUOP_is_up",
    (co.KEXEC_OP, co.KEXEC_CMD_kexec_status): "KEXEC_CMD_kexec_status",
    (co.PLATFORM_OP, co.XENPF_get_dom0_console): "XENPF_get_dom0_console",
    (co.PLATFORM_OP, co.XENPF_resource_op): "XENPF_resource_op",
    (hc.SYSCTL, co.XEN_SYSCTL_livepatch_op): "XEN_SYSCTL_livepatch_op (LIST)",
}

_MEM = hc.MEMORY_OP
_VER = hc.XEN_VERSION
_PF = co.PLATFORM_OP


def _per_domain(subop: int) -> tuple[Path, ...]:
    """memory_op 3, 4 and 14: one path in do_memory_op for all three."""
    return (
        Path(_MEM, subop, e.EFAULT, _ALL, "copy of the domid: common/memory.c@4.14:1254-1255 "
             "@4.17:1500-1501 @4.20:1503-1504"),
        Path(_MEM, subop, e.ESRCH, _ALL, "rcu_lock_domain_by_any_id finds no domain: "
             "common/memory.c@4.14:1257-1259 @4.17:1503-1505 @4.20:1506-1508"),
        Path(_MEM, subop, e.EPERM, _ALL, "xsm_memory_stat_reservation (XSM_TARGET), dummy "
             "module: common/memory.c@4.14:1261 @4.17:1507 @4.20:1510; "
             "include/xsm/dummy.h@4.14:226-230 @4.17:260-265 @4.20:260-265"),
        Path(_MEM, subop, e.EACCES, _ALL, "the same hook under FLASK: "
             "xsm/flask/avc.c@4.14:762 @4.17:762 @4.20:762"),
    )


def _platform(subop: int) -> tuple[Path, ...]:
    """What every platform_op returns before its command is looked at."""
    return (
        Path(_PF, subop, e.EFAULT, _ALL, "copy of the struct: "
             "arch/x86/platform_hypercall.c@4.14:193-194 @4.17:223-224 @4.20:225-226"),
        # A wrong interface_version, and FLASK's denial: both -EACCES.
        Path(_PF, subop, e.EACCES, _ALL, "interface_version: "
             "arch/x86/platform_hypercall.c@4.14:196-197 @4.17:226-227 @4.20:228-229"),
        Path(_PF, subop, e.EPERM, _ALL, "xsm_platform_op (XSM_PRIV): "
             "arch/x86/platform_hypercall.c@4.14:199-201 @4.17:229-231 @4.20:231-233"),
    )


def _varbuf(subop: int) -> tuple[Path, ...]:
    """XENVER_*2 (4.20+): absent before, xenver_varbuf_op from 4.20."""
    return (
        Path(_VER, subop, e.ENOSYS, _BEFORE_4_20, "no such subop: "
             "common/kernel.c@4.14:640 @4.17:660"),
        Path(_VER, subop, e.EPERM, _FROM_4_20, "xsm_xen_version denies (FLASK's "
             "denial too is turned into -EPERM): common/kernel.c@4.20:573,758-759"),
        Path(_VER, subop, e.E2BIG, _FROM_4_20, "string over 64 KiB: "
             "common/kernel.c@4.20:552-553"),
        Path(_VER, subop, e.EFAULT, _FROM_4_20, "copy of the buffer: "
             "common/kernel.c@4.20:558-559,564-566"),
        Path(_VER, subop, e.ENOBUFS, _FROM_4_20, "buffer too small: "
             "common/kernel.c@4.20:561-562"),
    )


PATHS: tuple[Path, ...] = (
    # XENMEM_maximum_ram_page: max_page; its only error is start_extent's -EINVAL
    # (common/memory.c@4.14:1242-1243 @4.17:1485-1486 @4.20:1488-1489), another request.
    *_per_domain(hc.XENMEM_current_reservation),
    *_per_domain(hc.XENMEM_maximum_reservation),
    # XENMEM_maximum_gpfn: domain_get_maximum_gpfn is the answer, with no error of its
    # own (arch/x86/mm.c@4.14:469-475 @4.17:481-490 @4.20:477-486).
    *_per_domain(hc.XENMEM_maximum_gpfn),
    # XENMEM_get_sharing_*: a count, no error (arch/x86/x86_64/mm.c@4.14:963-967
    # @4.17:1003-1007 @4.20:1018-1022). XENVER_version: a number (kernel.c@4.14:464-465).
    Path(_VER, co.XENVER_pagesize, e.EINVAL, _ALL, "a non-NULL argument: "
         "common/kernel.c@4.14:574 @4.17:594 @4.20:724"),
    Path(_VER, co.XENVER_build_id, e.EPERM, _ALL, "xsm_xen_version denies: "
         "common/kernel.c@4.14:610-611 @4.17:630-631 @4.20:758-759"),
    Path(_VER, co.XENVER_build_id, e.ENODATA, _ALL, "no build id: "
         "common/version.c@4.14:78-79 @4.17:102-103 @4.20:102-103"),
    Path(_VER, co.XENVER_build_id, e.EFAULT, _ALL, "copy of the buffer: "
         "common/kernel.c@4.14:616-617,633-634 @4.17:636-637,653-654 @4.20:558-559"),
    Path(_VER, co.XENVER_build_id, e.EINVAL, _BEFORE_4_20, "len 0: "
         "common/kernel.c@4.14:619-620 @4.17:639-640"),
    Path(_VER, co.XENVER_build_id, e.ENOBUFS, _ALL, "buffer too small: "
         "common/kernel.c@4.14:630-631 @4.17:650-651 @4.20:561-562"),
    Path(_VER, co.XENVER_build_id, e.E2BIG, _FROM_4_20, "over 64 KiB: "
         "common/kernel.c@4.20:552-553"),
    *_varbuf(co.XENVER_extraversion2),
    *_varbuf(co.XENVER_capabilities2),
    *_varbuf(co.XENVER_changeset2),
    *_varbuf(co.XENVER_commandline2),
    Path(co.GET_DEBUGREG, co.DR6, e.ENODEV, _ALL, "x86emul_read_dr fails: "
         "arch/x86/pv/misc-hypercalls.c@4.14:36 @4.17:40 @4.20:28"),
    Path(co.GET_DEBUGREG, co.DR6, e.ENOSYS, _ALL, "a PVH dom0: PV only "
         "(arch/x86/hvm/hypercall.c@4.14:126-160 has none; "
         "include/hypercall-defs.c@4.17:234 @4.20:241)"),
    Path(co.HYPFS_OP, 0, e.EPERM, _ALL, "xsm_hypfs_op (XSM_PRIV): "
         "common/hypfs.c@4.14:405-406 @4.17:686-687 @4.20:686-687"),
    Path(co.HYPFS_OP, 0, e.EINVAL, _ALL, "an argument given: "
         "common/hypfs.c@4.14:410-412 @4.17:691-693 @4.20:691-693"),
    Path(co.HYPFS_OP, 0, e.ENOSYS, _ALL, "a build without CONFIG_HYPFS: "
         "arch/x86/pv/hypercall.c@4.14:88-89; include/hypercall-defs.c@4.17:284-285 "
         "@4.20:291-292"),
    Path(co.VCPU_OP, co.VCPUOP_is_up, e.ENOENT, _ALL, "no such vCPU: "
         "common/domain.c@4.14:1352-1353; arch/x86/domain.c@4.17:1505-1506 "
         "@4.20:1575-1576"),
    Path(co.KEXEC_OP, co.KEXEC_CMD_kexec_status, e.EPERM, _ALL, "xsm_kexec (XSM_PRIV): "
         "common/kexec.c@4.14:1219-1221 @4.17:1222-1224 @4.20:1222-1224"),
    Path(co.KEXEC_OP, co.KEXEC_CMD_kexec_status, e.EACCES, _ALL, "the same under FLASK: "
         "xsm/flask/avc.c@4.14:762 @4.17:762 @4.20:762"),
    Path(co.KEXEC_OP, co.KEXEC_CMD_kexec_status, e.EFAULT, _ALL, "copy of the status: "
         "common/kexec.c@4.14:1202-1203 @4.17:1205-1206 @4.20:1205-1206"),
    Path(co.KEXEC_OP, co.KEXEC_CMD_kexec_status, e.EINVAL, _ALL, "a type past crash: "
         "common/kexec.c@4.14:1207-1208 @4.17:1210-1211 @4.20:1210-1211"),
    Path(co.KEXEC_OP, co.KEXEC_CMD_kexec_status, e.ENOSYS, _ALL, "a PVH dom0 (PV only: "
         "arch/x86/hvm/hypercall.c@4.14:126-160 has none; include/hypercall-defs.c@4.17:"
         "273-274 @4.20:280-281) or a build without CONFIG_KEXEC "
         "(arch/x86/pv/hypercall.c@4.14:77-78)"),
    *_platform(co.XENPF_resource_op),
    Path(_PF, co.XENPF_resource_op, e.EINVAL, _ALL, "more than 3 entries: "
         "arch/x86/platform_hypercall.c@4.14:726-729 @4.17:756-759 @4.20:798-801"),
    Path(_PF, co.XENPF_resource_op, e.ENOMEM, _ALL, "xmalloc_array fails: "
         "arch/x86/platform_hypercall.c@4.14:732-736 @4.17:762-766 @4.20:804-808"),
    Path(_PF, co.XENPF_resource_op, e.ENODEV, _ALL, "cpu offline: "
         "arch/x86/platform_hypercall.c@4.14:761-765 @4.17:791-795 @4.20:833-837"),
    *_platform(co.XENPF_get_dom0_console),
    Path(_PF, co.XENPF_get_dom0_console, e.ENOSYS, _ALL, "before 4.18 no such command, "
         "from 4.18 a build without CONFIG_VIDEO: arch/x86/platform_hypercall.c@4.14:812-813 "
         "@4.17:842-843 @4.20:884,897-900"),
    Path(_PF, co.XENPF_get_dom0_console, e.ENODEV, _FROM_4_20, "no boot console: "
         "arch/x86/platform_hypercall.c@4.20:888-891"),
    # A sysctl: copy, interface version, XSM (common/sysctl.c@4.14:38-44 @4.17:39-45
    # @4.20:39-45), then livepatch_list (common/livepatch.c@4.14:1154 @4.17:1159
    # @4.20:1230); ENOSYS without CONFIG_LIVEPATCH.
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.EFAULT, _ALL, "copy of the struct: "
         "common/sysctl.c@4.14:38-39 @4.17:39-40 @4.20:39-40"),
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.EACCES, _ALL, "interface_version, "
         "or FLASK: common/sysctl.c@4.14:41-42 @4.17:42-43 @4.20:42-43"),
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.EPERM, _ALL, "xsm_sysctl (XSM_PRIV): "
         "common/sysctl.c@4.14:44 @4.17:45 @4.20:45"),
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.E2BIG, _ALL, "nr too large: "
         "common/livepatch.c@4.14:1161-1162 @4.17:1166-1167 @4.20:1237-1238"),
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.EINVAL, _ALL, "pad or bad version: "
         "common/livepatch.c@4.14:1164-1177 @4.17:1169-1182 @4.20:1240-1253"),
    Path(hc.SYSCTL, co.XEN_SYSCTL_livepatch_op, e.ENOSYS, _ALL, "a build without "
         "CONFIG_LIVEPATCH: include/xen/livepatch.h@4.14:166-168 @4.17:166-168 "
         "@4.20:158-160"),
)


def can_return(op: int, subop: int, release: tuple[int, int]) -> frozenset[int] | None:
    """The errnos (positive) Xen's code can return for (op, subop) at this (major,
    minor) release; None when the pair is not in PAIRS or the release was not read
    (READ). Pure: the watch calls it for other programs' calls."""
    if (op, subop) not in PAIRS or release not in _ALL:
        return None
    return _TABLE[(op, subop, release)]


_TABLE: dict[tuple[int, int, tuple[int, int]], frozenset[int]] = {
    (op, subop, r): frozenset(p.errno for p in PATHS
                              if (p.op, p.subop) == (op, subop) and r in p.releases)
    for (op, subop) in PAIRS for r in READ
}
