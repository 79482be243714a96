# SPDX-License-Identifier: GPL-2.0-only
"""The rc census as data: every hypercall path whose *successful* return value carries
data through the `long rc` -> privcmd `int` -> glibc path, and what xenprobe does with it.

Rows follow shared/reference/rc-census.md (ids K*, R*, C*, S*), re-checked against the
Xen source at RELEASE-4.13.0 ... RELEASE-4.22.0 (citations are file@4.NN:line, paths
below xen/). tests/test_census.py keeps this table, the probe list (quantities.CALLS),
the native allow-list and the refusal proof (tests/test_readonly.py) in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from xenprobe.xen.abi import hypercalls as hc


class Effect(enum.StrEnum):
    READ_ONLY = "read-only"
    STATE_CHANGING = "state-changing"


class Build(enum.StrEnum):
    DEFAULT = "default"          # in a default x86 build
    NON_DEFAULT = "non-default"  # needs a Kconfig option a default build lacks


class Status(enum.StrEnum):
    PROBED = "probed"            # a quantity in quantities.CALLS, on the allow-list
    REFUSED = "refused"          # state-changing: refused by name in test_readonly.py
    OUT_OF_REACH = "out-of-reach"  # read-only, not probed: `reason` says why


@dataclass(frozen=True, slots=True)
class Row:
    key: str                # the census id
    hypercall: str
    op: int                 # hypercall number
    subop_name: str
    subop: int              # the subop / cmd as the hypercall takes it
    returns: str
    effect: Effect
    build: Build
    callers: str            # which dom0 can issue it: "PV+PVH" or "PV"
    cites: str
    status: Status
    reason: str = ""        # why out of reach, or what the probe reads
    by_struct: bool = False  # the subop lives in a struct behind a pointer


R, S = Effect.READ_ONLY, Effect.STATE_CHANGING
D, N = Build.DEFAULT, Build.NON_DEFAULT
PROBED, REFUSED, OUT = Status.PROBED, Status.REFUSED, Status.OUT_OF_REACH

ROWS: tuple[Row, ...] = (
    # 1a. Read-only, default x86 build.
    Row("K1", "memory_op", hc.MEMORY_OP, "XENMEM_maximum_ram_page", 2,
        "max_page (unsigned long)", R, D, "PV+PVH",
        "common/memory.c@4.13:1244 @4.17:1488 @4.22:1645", PROBED),
    Row("K2", "memory_op", hc.MEMORY_OP, "XENMEM_current_reservation", 3,
        "domain_tot_pages(d) (unsigned int)", R, D, "PV+PVH",
        "common/memory.c@4.13:1270 @4.17:1517 @4.22:1674", PROBED),
    Row("K3", "memory_op", hc.MEMORY_OP, "XENMEM_maximum_reservation", 4,
        "d->max_pages (unsigned int; dom0 default UINT_MAX)", R, D, "PV+PVH",
        "common/memory.c@4.13:1273 @4.17:1520 @4.22:1677", PROBED),
    Row("K4", "memory_op", hc.MEMORY_OP, "XENMEM_maximum_gpfn", 14,
        "domain_get_maximum_gpfn(d) (unsigned long)", R, D, "PV+PVH",
        "common/memory.c@4.13:1277 @4.17:1524 @4.22:1681", PROBED),
    Row("K5", "xen_version", hc.XEN_VERSION, "XENVER_version", 0,
        "(major << 16) | minor", R, D, "PV+PVH",
        "common/kernel.c@4.13:390 @4.17:481 @4.22:573", PROBED),
    Row("R1", "xen_version", hc.XEN_VERSION, "XENVER_pagesize", 7,
        "PAGE_SIZE (4096); -EINVAL for a non-NULL arg", R, D, "PV+PVH",
        "common/kernel.c@4.13:499 @4.17:594 @4.22:719", PROBED),
    Row("R2", "xen_version", hc.XEN_VERSION, "XENVER_build_id", 10,
        "build-id length for a NULL arg (20 for SHA-1)", R, D, "PV+PVH",
        "common/kernel.c@4.13:553,561 @4.17:648,656 @4.22:551,563", PROBED),
    Row("R3a", "xen_version", hc.XEN_VERSION, "XENVER_extraversion2", 11,
        "strlen for a NULL arg (4.20+)", R, D, "PV+PVH",
        "common/kernel.c@4.20:556,568 @4.22:551,563", PROBED),
    Row("R3b", "xen_version", hc.XEN_VERSION, "XENVER_capabilities2", 12,
        "strlen for a NULL arg (4.20+)", R, D, "PV+PVH",
        "common/kernel.c@4.20:556,568 @4.22:551,563", PROBED),
    Row("R3c", "xen_version", hc.XEN_VERSION, "XENVER_changeset2", 13,
        "strlen for a NULL arg (4.20+)", R, D, "PV+PVH",
        "common/kernel.c@4.20:556,568 @4.22:551,563", PROBED),
    Row("R3d", "xen_version", hc.XEN_VERSION, "XENVER_commandline2", 14,
        "strlen for a NULL arg (4.20+)", R, D, "PV+PVH",
        "common/kernel.c@4.20:556,568 @4.22:551,563", PROBED),
    Row("R4", "vcpu_op", 24, "VCPUOP_is_up", 3,
        "0 or 1 for one of the caller's own vCPUs", R, D, "PV+PVH",
        "common/domain.c@4.13:1480 @4.17:1650 @4.22:2219", PROBED),
    Row("R5", "platform_op", 7, "XENPF_get_dom0_console", 64,
        "sizeof(dom0_vga_console_info) = 40 (4.18+, CONFIG_VIDEO)", R, D, "PV+PVH",
        "arch/x86/platform_hypercall.c@4.18:879 @4.22:929; "
        "drivers/video/vga.c@4.18:200-204", PROBED, by_struct=True),
    Row("R6", "platform_op", 7, "XENPF_resource_op (MSR_READ only)", 61,
        "nr_done (<= 3)", R, D, "PV+PVH",
        "arch/x86/platform_hypercall.c@4.13:777 @4.17:808 @4.22:887", PROBED,
        by_struct=True),
    Row("R7", "sysctl", hc.SYSCTL, "LIVEPATCH_LIST (2) in XEN_SYSCTL_livepatch_op", 27,
        "payload entries copied, at most nr <= 1024: 0 for xenprobe's nr 0 (the count "
        "comes back in the struct's nr)", R, D, "PV+PVH",
        "common/livepatch.c@4.13:1049 @4.17:1250 @4.22:1392", PROBED,
        "LIST asking for no entries (nr 0, what xc_livepatch_list_get_sizes asks): "
        "rc 0, the payload count comes back in the struct's nr; only LIST passes the "
        "allow-list's check of livepatch_op's own cmd; no raw reading (xenprobe's "
        "guard keeps a sysctl out of multicalls); libxc xc_livepatch_list_get_sizes "
        "(4.14+); absent on a build without CONFIG_LIVEPATCH", True),
    Row("R8", "kexec_op", 37, "KEXEC_CMD_kexec_status", 6,
        "0 or 1: the image type's slot bit (1 after one load)", R, D, "PV",
        "common/kexec.c@4.13:1209 @4.17:1213 @4.22:1213", PROBED),
    Row("R9", "hypfs_op", 42, "XEN_HYPFS_OP_get_version", 0,
        "XEN_HYPFS_VERSION = 1 (4.14+)", R, D, "PV+PVH",
        "common/hypfs.c@4.14:414 @4.17:695 @4.22:696", PROBED),
    Row("R10", "get_debugreg", 9, "DR6", 6,
        "the calling vCPU's DR6; resting value 0xFFFF0FF0", R, D, "PV",
        "arch/x86/pv/misc-hypercalls.c@4.13:31-36 @4.17:31-40 @4.22:21-30; "
        "arch/x86/domain.c@4.17:533", PROBED),
    Row("R11", "memory_op", hc.MEMORY_OP, "XENMEM_get_sharing_freed_pages", 18,
        "frames saved by sharing; 0 without CONFIG_MEM_SHARING", R, D, "PV+PVH",
        "arch/x86/x86_64/mm.c@4.13:989 @4.17:1004 @4.22:1021; stub "
        "arch/x86/include/asm/mem_sharing.h@4.17:121-124", PROBED),
    Row("R12", "memory_op", hc.MEMORY_OP, "XENMEM_get_sharing_shared_pages", 19,
        "shared frames; 0 without CONFIG_MEM_SHARING", R, D, "PV+PVH",
        "arch/x86/x86_64/mm.c@4.13:992 @4.17:1007 @4.22:1024; stub "
        "arch/x86/include/asm/mem_sharing.h@4.17:126-129", PROBED),
    # 1b. Read-only, non-default builds.
    Row("C1", "xsm_op", 27, "FLASK_GETENFORCE", 2, "0 or 1", R, N, "PV+PVH",
        "xsm/flask/flask_op.c@4.13:653 @4.17:629 @4.22:627", OUT,
        "needs XSM+FLASK; without it xsm_op is -ENOSYS (include/xsm/dummy.h@4.17:499-502)",
        True),
    Row("C2", "xsm_op", 27, "FLASK_POLICYVERS", 10, "POLICYDB_VERSION_MAX (30)", R, N,
        "PV+PVH", "xsm/flask/flask_op.c@4.13:681 @4.17:657 @4.22:655", OUT,
        "needs XSM+FLASK", True),
    Row("C3", "xsm_op", 27, "FLASK_MLS", 14, "0 or 1", R, N, "PV+PVH",
        "xsm/flask/flask_op.c@4.13:697 @4.17:673 @4.22:671", OUT, "needs XSM+FLASK",
        True),
    Row("C4", "xsm_op", 27, "FLASK_GETAVC_THRESHOLD", 16, "avc_cache_threshold", R, N,
        "PV+PVH", "xsm/flask/flask_op.c@4.13:705 @4.17:677 @4.22:675", OUT,
        "needs XSM+FLASK", True),
    Row("C5", "memory_op", hc.MEMORY_OP, "XENMEM_sharing_op debug_gfn/debug_gref", 22,
        "page refcount - 1", R, N, "PV+PVH",
        "arch/x86/mm/mem_sharing.c@4.13:767,1634 @4.17:841,2245 @4.22:826,2242", OUT,
        "needs CONFIG_MEM_SHARING (UNSUPPORTED); sharing_op's op is in a struct "
        "shared with state-changing ops (nominate, share, ...)", True),
    Row("C6", "memory_op", hc.MEMORY_OP, "XENMEM_sharing_op audit", 22,
        "inconsistencies found", R, N, "PV+PVH",
        "arch/x86/mm/mem_sharing.c@4.13:1378 @4.17:2008 @4.22:2005", OUT,
        "needs CONFIG_MEM_SHARING and a debug build; walks every shared page", True),
    Row("C7", "xenoprof_op", 31, "XENOPROF_get_ibs_caps", 16, "AMD IBS CPUID bits", R, N,
        "PV", "common/xenoprof.c@4.13:906 @4.17:949 @4.21:949", OUT,
        "needs XENOPROF_init first (a state change); EXPERT from 4.18, gone in 4.22"),
    # 1c. Value-returning and state-changing: never issued, refused by name.
    Row("S1a", "memory_op", hc.MEMORY_OP, "XENMEM_increase_reservation", 0,
        "nr_done", S, D, "PV+PVH", "common/memory.c@4.13:1213 @4.17:1462 @4.22:1619",
        REFUSED),
    Row("S1b", "memory_op", hc.MEMORY_OP, "XENMEM_decrease_reservation", 1,
        "nr_done", S, D, "PV+PVH", "common/memory.c@4.13:1213 @4.17:1462 @4.22:1619",
        REFUSED),
    Row("S1c", "memory_op", hc.MEMORY_OP, "XENMEM_populate_physmap", 6,
        "nr_done", S, D, "PV+PVH", "common/memory.c@4.13:1213 @4.17:1462 @4.22:1619",
        REFUSED),
    Row("S2", "console_io", 18, "CONSOLEIO_read", 1,
        "bytes copied; consumes the serial RX ring", S, D, "PV+PVH",
        "drivers/char/console.c@4.13:648-649 @4.17:717-718 @4.22:860-861", REFUSED),
    Row("S3", "sched_op", 29, "SCHEDOP_watchdog", 6,
        "new watchdog id; arms a timer that shuts the caller down", S, D, "PV+PVH",
        "common/schedule.c@4.13:1503; common/sched/core.c@4.17:1551 @4.22:1579",
        REFUSED),
    Row("S4", "physdev_op", 33, "PHYSDEVOP_dbgp_op", 29,
        "0 or 1; stops/restarts Xen's EHCI debug console", S, D, "PV (+PVH 4.17+)",
        "drivers/char/ehci-dbgp.c@4.13:1572 @4.17:1585 @4.22:1594", REFUSED),
    Row("S5", "platform_op", 7, "XENPF_cpu_hotadd", 58, "new CPU number; adds a CPU",
        S, D, "PV+PVH", "arch/x86/platform_hypercall.c@4.13:675 @4.17:706 @4.22:784",
        REFUSED, by_struct=True),
    Row("S6", "platform_op", 7, "XENPF_resource_op (MSR_WRITE)", 61,
        "nr_done; writes MSRs", S, D, "PV+PVH",
        "arch/x86/platform_hypercall.c@4.13:777 @4.17:808 @4.22:887", REFUSED,
        by_struct=True),
    Row("S7", "domctl", hc.DOMCTL, "XEN_DOMCTL_memory_mapping", 39,
        "0 or a partial count; maps MMIO into a guest", S, D, "PV+PVH",
        "arch/x86/mm/p2m.c@4.13:2315 @4.17:1698 @4.22:1745; common/domctl.c@4.17:761",
        REFUSED, by_struct=True),
    Row("S8", "argo_op", 39, "XEN_ARGO_OP_sendv", 3, "bytes sent", S, N, "PV+PVH",
        "common/argo.c@4.13:2072 @4.17:2070 @4.22:2083", REFUSED),
)


def by_status(status: Status) -> tuple[Row, ...]:
    return tuple(r for r in ROWS if r.status is status)


def markdown_table() -> str:
    """The census as README shows it: one line per row, what xenprobe does with it."""
    lines = ["| # | hypercall / subop | returns | effect | build | dom0 | xenprobe |",
             "|---|---|---|---|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # "(major << 16) | minor" stays in its cell

    for r in ROWS:
        what = r.status.value + (f": {r.reason}" if r.status is Status.OUT_OF_REACH else "")
        lines.append(f"| {r.key} | {r.hypercall}({r.op}) / {cell(r.subop_name)} ({r.subop}) | "
                     f"{cell(r.returns)} | {r.effect.value} | {r.build.value} | {r.callers} | "
                     f"{cell(what)} |")
    return "\n".join(lines) + "\n"
