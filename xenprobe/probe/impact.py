# SPDX-License-Identifier: GPL-2.0-only
"""What a finding means for the host: whether a consumer that reads this quantity
through this layer gets a wrong value it would use, why, and what the operator can do.

Data, one row per quantity, from the consumer census (shared reference
consumer-census.md, rows A1..P1, each re-read in xen-project/xen at the tags cited).
A finding is a (quantity, layer) with readings in mismatch. Its impact is:

- harmless: no consumer reads the quantity through this layer, or none uses what is
  damaged. Shown in the table, the JSON and the metrics; no exit 1, no alert.
- exposure: libxenctrl before 4.15.1 issues the quantity's hypercall through the privcmd
  ioctl's int (the ioctl layer) and would read it wrong; whether such a consumer runs
  here is what the privcmd consumer scan tells (xenprobe.xen.consumers).
- harmful: what the host's consumers read is wrong: the hypervisor's own result (raw),
  the libxenctrl xenprobe loaded (libxc), or an ioctl path every libxenctrl release uses.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xenprobe.probe.classify import Verdict
from xenprobe.probe.judge import RAW
from xenprobe.xen.quantities import Quantity


class Impact(enum.StrEnum):
    HARMLESS = "harmless"
    EXPOSURE = "exposure"
    HARMFUL = "harmful"


class Readers(enum.StrEnum):
    """Which libxenctrl releases issue the quantity's hypercall through the privcmd
    ioctl's int return (glibc ioctl(), tools/libs/call/linux.c@RELEASE-4.14.6:83-86)."""

    NONE = "none"                     # no tool reads it through privcmd at all
    BEFORE_4_15_1 = "before 4.15.1"   # memory_op: a multicall from 4.15.1 on
    EVERY = "every release"           # xen_version, sysctl, platform_op...


@dataclass(frozen=True, slots=True)
class Consumer:
    who: str     # the program and function that reads the value
    cites: str   # where, file:line@tag (xen-project/xen unless named)


@dataclass(frozen=True, slots=True)
class Row:
    quantity: Quantity
    readers: Readers
    consumers: tuple[Consumer, ...]
    why: str     # why a damaged value harms them, or why nobody is harmed


# 4.14: tools/libxc/xc_private.c@RELEASE-4.14.6:331-348 do_memory_op -> xencall2 (int);
# 4.15.1+: tools/libs/ctrl/xc_private.c@RELEASE-4.17.0:329-385 a one-entry multicall.
_MEMORY_OP_INT = "libxenctrl < 4.15.1 reads memory_op through the int ioctl"

ROWS: dict[Quantity, Row] = {r.quantity: r for r in (
    Row(Quantity.MAXIMUM_RAM_PAGE, Readers.BEFORE_4_15_1, (
        Consumer("libxenguest PV save/migrate/restore, x86_pv_map_m2p()",
                 "tools/libxc/xc_sr_common_x86_pv.c:97-113@RELEASE-4.14.6"),
        Consumer("xen-hptool mem-offline, xc_exchange_page()",
                 "tools/libxc/xc_offline_page.c:494-500@RELEASE-4.14.6")),
        f"{_MEMORY_OP_INT}: it sizes the M2P map of PV save and migration, which then "
        "fail (\"Failed to get maximum ram page\") or map too little"),
    Row(Quantity.MAXIMUM_GPFN, Readers.BEFORE_4_15_1, (
        Consumer("libxenguest HVM save/migrate, x86_hvm_setup() -> xc_domain_nr_gpfns()",
                 "tools/libxc/xc_sr_save_x86_hvm.c:143-158@RELEASE-4.14.6, "
                 "tools/libxc/xc_domain.c:869-889@RELEASE-4.14.6"),
        Consumer("libxenguest dump-core", "tools/libxc/xc_core_x86.c:52,87@RELEASE-4.14.6")),
        f"{_MEMORY_OP_INT}: it sizes the p2m of HVM save and migration, which then "
        "fail (\"Unable to obtain the guest p2m size\") or leave memory behind"),
    Row(Quantity.SHARING_FREED_PAGES, Readers.BEFORE_4_15_1, (
        Consumer("libxl_get_physinfo() (xl create, xl info, libvirt)",
                 "tools/libxl/libxl.c:377-394@RELEASE-4.14.6"),),
        f"{_MEMORY_OP_INT}: a negative count fails libxl_get_physinfo, so xl create "
        "and xl info fail"),
    Row(Quantity.SHARING_SHARED_PAGES, Readers.BEFORE_4_15_1, (
        Consumer("libxl_get_physinfo() (xl create, xl info, libvirt)",
                 "tools/libxl/libxl.c:377-394@RELEASE-4.14.6"),),
        f"{_MEMORY_OP_INT}: a negative count fails libxl_get_physinfo, so xl create "
        "and xl info fail"),
    Row(Quantity.CURRENT_RESERVATION, Readers.NONE, (
        Consumer("libxl reads tot_pages from getdomaininfo's 64-bit struct instead",
                 "tools/libs/light/libxl_domain.c:301@RELEASE-4.17.0"),),
        "no tool issues XENMEM_current_reservation (git grep of tools/ at 4.14.6, "
        "4.17.0, 4.20.0); libxl reads the same count from getdomaininfo's 64-bit field"),
    Row(Quantity.MAXIMUM_RESERVATION, Readers.NONE, (
        Consumer("libxl reads max_pages from getdomaininfo's 64-bit struct instead",
                 "tools/libs/light/libxl_domain.c:304@RELEASE-4.17.0"),
        Consumer("Linux PV dom0 boot, xen_get_max_pages()", "arch/x86/xen/setup.c "
                 "(kernel-internal, long)")),
        "no tool issues XENMEM_maximum_reservation; the dom0 kernel reads it "
        "kernel-internally as a long and caps it, so dom0's UINT_MAX read as -1/EPERM "
        "here reaches nobody"),
    Row(Quantity.DEBUG_REGISTER_6, Readers.NONE, (
        Consumer("Linux PV dom0 #DB handler, xen_get_debugreg()",
                 "arch/x86/xen/enlighten_pv.c (kernel-internal, unsigned long)"),),
        "DR6 is a bit pattern whose reserved upper bits no consumer uses: only the dom0 "
        "kernel reads it, kernel-internally as an unsigned long; no tool issues it "
        "through privcmd (tools/misc/xenperf.c:32@RELEASE-4.17.0 only names it)"),
    Row(Quantity.VCPU_IS_UP, Readers.NONE, (
        Consumer("Linux smp_pv.c (kernel-internal)", "arch/x86/xen/smp_pv.c"),),
        "no tool issues VCPUOP_is_up (libxl uses getvcpuinfo's online field); the "
        "value is 0 or 1"),
    Row(Quantity.DOM0_CONSOLE_SIZE, Readers.NONE, (
        Consumer("Linux PVH dom0 boot, xen_pvh_init() (kernel-internal)",
                 "arch/x86/xen/enlighten_pvh.c"),),
        "no tool issues XENPF_get_dom0_console; only the dom0 kernel reads it"),
    Row(Quantity.XEN_VERSION, Readers.EVERY, (
        Consumer("libxl_get_version_info() (xl info, libvirt)",
                 "tools/libs/light/libxl.c:599-601@RELEASE-4.17.0"),
        Consumer("libxenguest write_headers(), the migration stream",
                 "tools/libs/guest/xg_sr_save.c:12-30@RELEASE-4.17.0")),
        "every libxenctrl reads xen_version through the int ioctl; a negative version "
        "aborts saves (the value, at most 0x40016, cannot be damaged)"),
    Row(Quantity.XEN_PAGESIZE, Readers.EVERY, (
        Consumer("libxl info->pagesize, xl info's divisor",
                 "tools/libs/light/libxl.c:621@RELEASE-4.17.0, "
                 "tools/xl/xl_info.c:229@RELEASE-4.17.0"),),
        "read through the int ioctl by every libxenctrl; a wrong page size skews xl "
        "and libvirt memory figures"),
    Row(Quantity.BUILD_ID_SIZE, Readers.EVERY, (
        Consumer("libxl, xc_xenver_buildid() size query",
                 "tools/libs/ctrl/xc_version.c:102-127@RELEASE-4.20.0"),),
        "4.20's libxenctrl sizes a buffer from it through the int ioctl"),
    *(Row(q, Readers.EVERY, (
        Consumer("libxl_get_version_info(), xc_xenver_*() size query",
                 "tools/libs/ctrl/xc_version.c:155-173@RELEASE-4.20.0"),),
        "4.20's libxenctrl sizes a buffer from it through the int ioctl")
      for q in (Quantity.EXTRAVERSION_LEN, Quantity.CAPABILITIES_LEN,
                Quantity.CHANGESET_LEN, Quantity.COMMANDLINE_LEN)),
    Row(Quantity.HYPFS_VERSION, Readers.EVERY, (
        Consumer("xenhypfs_open() (xenhypfs, xl set-parameters)",
                 "tools/libs/hypfs/core.c:70-72@RELEASE-4.17.0"),),
        "read through the int ioctl; a negative value fails xenhypfs_open"),
    *(Row(q, Readers.EVERY, (
        Consumer("kexec-tools kexec -S, xc_kexec_status()",
                 "tools/libs/ctrl/xc_kexec.c:130-150@RELEASE-4.17.0"),),
        "read through the int ioctl; kexec -S makes it its exit status")
      for q in (Quantity.KEXEC_STATUS_DEFAULT, Quantity.KEXEC_STATUS_CRASH)),
    Row(Quantity.RESOURCE_OP_DONE, Readers.EVERY, (
        Consumer("xl psr-cmt-show, xc_resource_op_one()",
                 "tools/libs/ctrl/xc_resource.c:22-44@RELEASE-4.17.0"),),
        "read through the int ioctl and compared with the entries asked for"),
    Row(Quantity.LIVEPATCH_LISTED, Readers.EVERY, (
        Consumer("xen-livepatch list, xc_livepatch_list()",
                 "tools/libs/ctrl/xc_misc.c:881-909@RELEASE-4.17.0"),),
        "read through the int ioctl as the count of entries copied"),
)}


@dataclass(frozen=True, slots=True)
class Assessment:
    impact: Impact
    reason: str
    action: str


_NOTHING = "nothing: shown for completeness"
_SCAN = ("make sure no process maps libxenctrl before 4.15.1 (check's privcmd consumers, "
         "xenprobe_privcmd_consumer_info{verdict=\"int_path\"}): libxenctrl 4.15.1 and "
         "later (Debian 12 ships 4.17) read memory_op through a multicall")


def assess(quantity: Quantity, layer: str) -> Assessment:
    """The impact of a mismatch of `quantity` through `layer`."""
    row = ROWS[quantity]
    if row.readers is Readers.NONE:
        return Assessment(Impact.HARMLESS, row.why, _NOTHING)
    if layer == "syscall":
        return Assessment(Impact.HARMLESS, "no consumer issues privcmd hypercalls "
                          "through syscall(2)'s long: libxenctrl calls glibc ioctl(), "
                          "the ioctl layer", _NOTHING)
    if layer == "ioctl" and row.readers is Readers.BEFORE_4_15_1:
        return Assessment(Impact.EXPOSURE, row.why, _SCAN)
    if layer == RAW:
        return Assessment(Impact.HARMFUL, "the hypervisor's own result is wrong for "
                          "every consumer, whatever its libxenctrl: " + row.why,
                          "find why this dom0 gets it (a 32-bit dom0 kernel's compat "
                          "clamp: run a 64-bit dom0 kernel) and report it")
    if layer == "libxc":
        return Assessment(Impact.HARMFUL, "the libxenctrl on this host reads it wrong: "
                          + row.why, "install libxenctrl 4.15.1 or later (memory_op "
                          "through a multicall); until then avoid the operations named")
    # The ioctl layer for a quantity every libxenctrl reads through it, or a layer
    # this table does not know: never hidden.
    return Assessment(Impact.HARMFUL, row.why, "report it: these values are small "
                      "enough that no conversion should touch them")


@dataclass(frozen=True, slots=True)
class Finding:
    quantity: Quantity
    layer: str
    readings: int                  # subjects whose reading by this layer mismatched
    verdicts: Mapping[str, int]    # by verdict
    assessment: Assessment

    def as_json(self) -> dict[str, object]:
        row = ROWS[self.quantity]
        return {"quantity": self.quantity.value, "layer": self.layer,
                "readings": self.readings, "verdicts": dict(self.verdicts),
                "impact": self.assessment.impact.value,
                "reason": self.assessment.reason, "action": self.assessment.action,
                "consumers": [{"who": c.who, "cites": c.cites} for c in row.consumers]}


def findings(verdicts: Mapping[tuple[Quantity, str, Verdict], int]) -> list[Finding]:
    """One Finding per (quantity, layer) in mismatch, from a sweep's summary verdicts."""
    found: dict[tuple[Quantity, str], Counter[str]] = {}
    for (q, layer, v), n in verdicts.items():
        if v.is_mismatch and n:
            found.setdefault((q, layer), Counter())[v.value] += n
    return [Finding(q, layer, sum(c.values()), dict(sorted(c.items())), assess(q, layer))
            for (q, layer), c in sorted(found.items())]


def readings_by_impact(verdicts: Mapping[tuple[Quantity, str, Verdict], int]
                       ) -> dict[Impact, int]:
    """Impact -> mismatched readings, every impact present (0 when none)."""
    out = dict.fromkeys(Impact, 0)
    for f in findings(verdicts):
        out[f.assessment.impact] += f.readings
    return out


def acts(verdicts: Mapping[tuple[Quantity, str, Verdict], int]) -> bool:
    """Whether any finding asks something of the operator (exit 1)."""
    return any(f.assessment.impact is not Impact.HARMLESS for f in findings(verdicts))


def markdown_table() -> str:
    """The table as docs/alerts.md shows it: one row per quantity and its impact per
    layer (raw, syscall, ioctl, libxc)."""
    layers = (RAW, "syscall", "ioctl", "libxc")
    rows = ["| Quantity | " + " | ".join(layers) + " | Consumers | Why |",
            "|---|" + "---|" * len(layers) + "---|---|"]
    for q, row in ROWS.items():
        cells = [assess(q, layer).impact.value for layer in layers]
        who = "; ".join(f"{c.who} ({c.cites})" for c in row.consumers)
        rows.append(f"| `{q.value}` | " + " | ".join(cells) + f" | {who} | {row.why} |")
    return "\n".join(rows)


def source_impact(quantity: Quantity) -> Impact:
    """The impact of a raw result wrong at the source (forged_errno, out_of_range, and a
    layer that passed a forged error on): no layer misread it, the hypervisor's answer
    itself is what every consumer of the quantity gets, whatever its libxenctrl. So it
    is harmful wherever some consumer reads the quantity (a guest-forged errno on
    maximum_gpfn makes HVM save and dump-core fail on an existing domain: consumer
    census D1, D3) and harmless where none does (Readers.NONE)."""
    return Impact.HARMLESS if ROWS[quantity].readers is Readers.NONE else Impact.HARMFUL


def source_acts(quantities: Iterable[Quantity]) -> bool:
    """Whether any source finding, given by its quantities, asks something of the
    operator (exit 1, XenprobeForgedAtSource)."""
    return any(source_impact(q) is not Impact.HARMLESS for q in quantities)
