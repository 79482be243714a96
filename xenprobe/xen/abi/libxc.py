# SPDX-License-Identifier: GPL-2.0-only
"""libxenctrl's C interface per Xen release: which functions exist and how they are declared.

Written from xen-abi.md section 6 and checked against tools/include/xenctrl.h (before
4.15: tools/libxc/include/xenctrl.h) at every RELEASE-4.13.0 ... RELEASE-4.22.0 tag.
Only the read-only functions xenprobe may call are listed. Struct types stay opaque:
xenprobe never lets libxenctrl fill a struct whose layout it would have to trust. The
exception is xc_resource_op_t, which xenprobe fills in and libxenctrl only reads (and
writes `result` into); its layout is the same at every release checked.

libxenctrl is built per hypervisor release (SONAME libxenctrl.so.<major>.<minor>) and
stamps that release's sysctl/domctl interface version into every request, so a library
only works against its own release; the memory_op and xen_version paths carry no
interface version and work against any.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenprobe.xen import memop_path

Version = tuple[int, int]

FIRST: Version = (4, 13)  # the oldest release whose header was checked
LAST: Version = (4, 22)   # the newest

# Types the declarations below need, as cffi reads them (x86-64).
TYPES = """
typedef struct xc_interface_core xc_interface;
typedef struct xentoollog_logger xentoollog_logger;
typedef unsigned long xen_pfn_t;
typedef struct xc_dominfo xc_dominfo_t;
typedef struct xen_domctl_getdomaininfo xc_domaininfo_t;
typedef struct xen_sysctl_physinfo xc_physinfo_t;
typedef struct xc_resource_op {
    uint64_t result;
    uint32_t cpu;
    uint32_t nr_entries;
    void *entries;
} xc_resource_op_t;
"""


@dataclass(frozen=True)
class Function:
    name: str
    declaration: str           # the C prototype, as the release's xenctrl.h has it
    since: Version = FIRST     # first release that exports it
    until: Version = LAST      # last release that exports it
    note: str = ""

    def exists_in(self, release: Version) -> bool:
        return self.since <= release <= self.until


FUNCTIONS: tuple[Function, ...] = (
    Function("xc_interface_open",
             "xc_interface *xc_interface_open(xentoollog_logger *logger, "
             "xentoollog_logger *dombuild_logger, unsigned open_flags);",
             note="NULL loggers log to stderr; opens privcmd 4 times, probes ioctl 0x50FF"),
    Function("xc_interface_close", "int xc_interface_close(xc_interface *xch);"),
    Function("xc_version", "int xc_version(xc_interface *xch, int cmd, void *arg);",
             note="XENVER_version returns the version word; an unknown cmd a raw -EINVAL"),
    Function("xc_maximum_ram_page",
             "int xc_maximum_ram_page(xc_interface *xch, unsigned long *max_mfn);",
             note="out-parameter since 4.6 (commit 1781f00ea62e); 0 or -1/errno"),
    Function("xc_domain_maximum_gpfn",
             "int xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, "
             "xen_pfn_t *gpfns);",
             note="out-parameter since 4.6, uint32_t domid since 4.10"),
    Function("xc_get_tot_pages", "long xc_get_tot_pages(xc_interface *xch, uint32_t domid);",
             note="<= 4.17 through xc_domain_getinfo, >= 4.18 xc_domain_getinfo_single"),
    Function("xc_domain_getinfo",
             "int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, "
             "unsigned int max_doms, xc_dominfo_t *info);",
             until=(4, 17), note="removed in 4.18 (commit 31c6554974) with xc_dominfo_t"),
    Function("xc_domain_getinfo_single",
             "int xc_domain_getinfo_single(xc_interface *xch, uint32_t domid, "
             "xc_domaininfo_t *info);",
             since=(4, 18), note="added in 4.18 (commit 7c7c436ccb)"),
    Function("xc_domain_getinfolist",
             "int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, "
             "unsigned int max_domains, xc_domaininfo_t *info);"),
    Function("xc_physinfo", "int xc_physinfo(xc_interface *xch, xc_physinfo_t *info);"),
    Function("xc_kexec_status", "int xc_kexec_status(xc_interface *xch, int type);",
             note="kexec_op KEXEC_CMD_kexec_status through xencall2 (the int ioctl); "
                  "tools/libs/ctrl/xc_kexec.c@RELEASE-4.17.0:130-152, "
                  "tools/libxc/xc_kexec.c@RELEASE-4.13.0:130"),
    Function("xc_memory_op",
             "long xc_memory_op(xc_interface *xch, unsigned int cmd, void *arg, size_t len);",
             since=(4, 17), note="exported from 4.17 (commit 108d145df8); before, internal "
                                 "do_memory_op"),
    # xenctrl.h@RELEASE-4.13.0 (tools/libxc/include):2442-2456 .. @RELEASE-4.22.0
    # (tools/include):2473-2487; entries are xenpf_resource_entry_t.
    Function("xc_resource_op",
             "int xc_resource_op(xc_interface *xch, uint32_t nr_ops, xc_resource_op_t *ops);",
             note="one op: one platform_op whose int rc is the return value and "
                  "ops->result (xc_resource.c@4.17:22-41); more: a multicall"),
    Function("xc_livepatch_list_get_sizes",
             "int xc_livepatch_list_get_sizes(xc_interface *xch, unsigned int *nr, "
             "uint32_t *name_total_size, uint32_t *metadata_total_size);",
             since=(4, 14), note="sysctl livepatch_op LIST with nr 0; returns do_sysctl's "
                                 "int when non-zero, else 0 (xc_misc.c@RELEASE-4.17.0:653-679)"),
)


@dataclass(frozen=True)
class Signatures:
    """What one release's libxenctrl offers."""

    release: Version
    functions: tuple[Function, ...]
    # <= 4.17: xc_get_tot_pages asks getdomaininfo, which answers for the next domain at
    # or above a missing id; libxc then sees a different domid and returns -1 without
    # setting errno. >= 4.18 asks for the exact domain (-1/ESRCH).
    tot_pages_exact: bool
    # libxenctrl's memory ops go through a one-entry multicall and keep all 64 bits of
    # the result: from 4.15.1 (backported from 4.16.0), so None for 4.15, whose SONAME
    # does not say the point release. The loaded file decides (xenprobe.xen.memop_path).
    memory_op_multicall: bool | None

    @property
    def soname(self) -> str:
        return soname(self.release)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.functions)

    def cdef(self) -> str:
        """The declarations to hand cffi for this release."""
        return TYPES + "\n".join(f.declaration for f in self.functions) + "\n"


def _multicall(path: str | None) -> bool | None:
    return None if path is None else path == "multicall"


def soname(release: Version) -> str:
    return f"libxenctrl.so.{release[0]}.{release[1]}"


def _table() -> dict[Version, Signatures]:
    releases = [(4, minor) for minor in range(FIRST[1], LAST[1] + 1)]
    return {r: Signatures(r, tuple(f for f in FUNCTIONS if f.exists_in(r)),
                          tot_pages_exact=r >= (4, 18),
                          memory_op_multicall=_multicall(memop_path.by_release(r)))
            for r in releases}


LIBXC: dict[Version, Signatures] = _table()


def signatures(release: Version) -> Signatures | None:
    """The table row for a libxenctrl release, or None where it was never checked."""
    return LIBXC.get(release)


def known() -> str:
    return f"{FIRST[0]}.{FIRST[1]} to {LAST[0]}.{LAST[1]}"
