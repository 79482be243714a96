# SPDX-License-Identifier: GPL-2.0-only
"""Mock host scenarios: TOML files that describe a Xen host and how its layers misbehave.

`load` validates a scenario and names the offending key on any error; `compile_text`
turns it into the flat directive list the native mock (native/mock) reads. Struct records
are packed here with the agent's own ABI tables, so the mock answers in the layout of
the scenario's Xen release.
"""

from __future__ import annotations

import os
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xenprobe.support import files
from xenprobe.support.errors import ScenarioError
from xenprobe.support.keys import Table, Where
from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.abi.layouts import DOMINF_HVM_GUEST, DOMINF_RUNNING
from xenprobe.xen.abi.releases import (
    Release,
    by_name,
    getdomaininfo_for_domctl,
    physinfo_for_sysctl,
)

PAGE = 4096
U32_MAX = 0xFFFFFFFF
# The widest counts the native mock holds: rule counts and lookups are int64_t,
# balloon periods uint64_t (native/mock/mock.h, faults.c).
I64_MAX = (1 << 63) - 1
U64_MAX = (1 << 64) - 1
XENVER_capabilities_len = 1024
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "PiB": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]iB|B)\s*$")
ERRNOS = {"EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "EAGAIN": 11,
          "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "EBUSY": 16, "EINVAL": 22,
          "ENOSYS": 38}
OPS = {"memory_op": hc.MEMORY_OP, "xen_version": hc.XEN_VERSION, "sysctl": hc.SYSCTL,
       "domctl": hc.DOMCTL, "multicall": hc.MULTICALL, "platform_op": co.PLATFORM_OP}


@dataclass(frozen=True)
class Balloon:
    step: int
    every: int
    low: int
    high: int


@dataclass(frozen=True)
class Domain:
    domid: int
    tot_pages: int
    max_pages: int
    max_gpfn: int
    hvm: bool
    vcpus: int
    balloon: Balloon | None = None
    vanish_after: int | None = None  # lookups before the domain disappears
    # The caller's own vCPUs its kernel has taken offline (census scenarios): down in
    # Xen on a PV dom0 (VCPUOP_down), still up on a PVH one.
    offline_vcpus: tuple[int, ...] = ()
    # (vCPU, every): that vCPU goes offline and online again after every `every`
    # VCPUOP_is_up reads of it (census scenarios): the look-again rule's drift.
    flap_vcpu: tuple[int, int] | None = None
    # What the toolstack wrote to xenstore's /local/domain/<id>/name (None: no node).
    name: str | None = None


# The most vCPUs the mock's census model gives a dom0 (native/mock/census.c MAX_VCPUS).
MAX_CENSUS_VCPUS = 4096

NAME_MAX = 2048  # bytes of a domain's name in the mock's xenstore

FAULT_KINDS = ("errno", "delay", "garbage", "short")
FAULT_LAYERS = ("hypervisor", "driver")
FAULT_VIAS = ("any", "ioctl", "syscall")
ANY = -1


@dataclass(frozen=True)
class Fault:
    """One [[fault]] rule (native/mock/faults.c and hypervisor.c say what each does).

    kind errno: the hypervisor (layer "hypervisor") answers -errno, on every path; or
    the privcmd driver (layer "driver") fails the HYPERCALL ioctl with it before Xen
    sees the request, on the paths `via` names. delay: the hypervisor answers `usec`
    microseconds late. garbage: a successful answer is replaced by pseudo-random bits.
    short: a sysctl/domctl answers short (a record fewer, or half a struct).
    op/subop ANY (-1) match every op/subop; count -1 means every matching request."""

    op: int
    subop: int
    errno: int
    count: int
    kind: str = "errno"
    layer: str = "hypervisor"
    via: str = "any"
    usec: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    release: Release
    reports_version: tuple[int, int]
    extraversion: str
    capabilities: str
    sysctl_interface: int
    domctl_interface: int
    total_pages: int
    free_pages: int
    max_page: int
    max_mfn: int
    nr_cpus: int
    cpu_khz: int
    driver: str
    role: str
    device: str
    sys_hypervisor: bool
    hypervisor_bits: int
    compat_clamp: bool
    self_domid: int
    domains: tuple[Domain, ...]
    faults: tuple[Fault, ...] = field(default=())
    hangs: tuple[tuple[int, int], ...] = field(default=())
    # Models the census's other read-only calls (native/mock/census.c); without it they
    # answer -ENOSYS, like every call the mock does not model.
    census: bool = False
    changeset: str = "xenprobe-mock"     # XENVER_changeset's text (char[64])
    commandline: str = ""                # XENVER_commandline's text (char[1024])
    build_id_size: int = 20              # a SHA-1 build-id note
    # kexec image types loaded once since boot ("default", "crash"): their
    # KEXEC_CMD_kexec_status slot bit reads 1 (native/mock/census.c).
    kexec_loaded: tuple[str, ...] = ()
    # XEN_SYSCTL_livepatch_op LIST: payloads loaded, or None for a build without
    # CONFIG_LIVEPATCH (default y on x86; Debian's builds have it).
    livepatch_payloads: int | None = 0
    # Whether dom0 runs xenstored (native/mock/xenstore.c answers its reads).
    xenstored: bool = True

    @property
    def guest_type(self) -> str:
        """What the kernel's /sys/hypervisor/guest_type says (torvalds/linux@4a4c29c96dde,
        drivers/xen/sys-hypervisor.c): a dom0 whose domain is an HVM one
        (XEN_DOMINF_hvm_guest) is PVH, the only HVM kind of dom0."""
        me = next((d for d in self.domains if d.domid == self.self_domid), None)
        return "PVH" if me is not None and me.hvm else "PV"

    @property
    def multicall(self) -> bool:
        """Whether this caller can issue a multicall. A PV kernel can on every release;
        a PVH one from 4.15.1 only (x86/hvm/hypercall.c@RELEASE-4.15.1:127; absent from
        hvm_hypercall_table at RELEASE-4.14.6:127-157 and RELEASE-4.15.0:124-154)."""
        if self.guest_type == "PV":
            return True
        if self.release.pvh_multicall is not None:
            return self.release.pvh_multicall
        point = re.match(r"\.(\d+)", self.extraversion)  # 4.15: the point release decides
        return point is not None and int(point.group(1)) >= 1


class _Reader(Table):
    """One table of a scenario: a Table that also reads sizes ("16 GiB") as pages."""

    def pages(self, key: str, default: Any = None, *, memory_key: str | None = None) -> Any:
        """A page count, given as pages (`key`) or as a size (`memory_key` = "16 GiB")."""
        if memory_key and memory_key in self:
            text = self.take(memory_key)
            if key in self:
                raise self.fail(key, f"give either {key} or {memory_key}, not both")
            m = _SIZE.match(text) if isinstance(text, str) else None
            if not m:
                raise self.fail(memory_key, f"expected a size like '16 GiB', got {text!r}")
            size = float(m.group(1)) * _UNITS[m.group(2)]
            if size % PAGE:
                raise self.fail(memory_key, "is not a whole number of 4 KiB pages")
            return int(size) // PAGE
        value = self.get(key, int, default)
        if value is not None and not 0 <= value < 1 << 64:
            raise self.fail(key, "is outside 0..2^64-1")
        return value


def printable(name: str) -> str:
    """A file name as text that can be printed and encoded anywhere: bytes that are not
    UTF-8 (os.fsdecode's surrogates) become \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def parse(text: str, source: str, name: str = "") -> Scenario:
    where = Where(f"scenario {source}", error=ScenarioError)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise where.fail(f"not valid TOML: {e}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise where.fail("not valid TOML: nested too deeply") from None
    except ValueError as e:  # an integer beyond int's digit limit (sys.int_info)
        raise where.fail(f"not valid TOML: {e}") from None
    top = _Reader(where, doc)
    description = top.get("description", str, "")

    xen = top.table("xen")
    try:
        release = by_name(xen.get("release", str))
    except KeyError as e:
        raise xen.fail("release", str(e.args[0])) from None
    extraversion = xen.line("extraversion", ".0", hc.XENVER_extraversion_len)
    capabilities = xen.line("capabilities",
                            "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
                            XENVER_capabilities_len)
    # What xen_version answers, when it is not the release whose layouts are used: a
    # build xenprobe does not know.
    reports = xen.get("reports_version", str, release.name)
    m = re.fullmatch(r"(\d+)\.(\d+)", reports)
    if not m or int(m.group(1)) > 0xFFFF or int(m.group(2)) > 0xFFFF:
        raise xen.fail("reports_version", f"expected MAJOR.MINOR, got {reports!r}")
    sysctl_if = xen.int_in("sysctl_interface", 0, U32_MAX, release.sysctl)
    domctl_if = xen.int_in("domctl_interface", 0, U32_MAX, release.domctl)
    xen.done()

    host = top.table("host")
    total = host.pages("total_pages", memory_key="memory")
    max_page = host.pages("max_page", total)
    max_mfn = host.pages("max_mfn", max(max_page, 1) - 1)
    nr_cpus = host.int_in("nr_cpus", 1, U32_MAX, 4)
    cpu_khz = host.int_in("cpu_khz", 0, U32_MAX, 2_400_000)
    free_default = host.peek("free_pages")

    linux = top.table("linux")
    # Only Linux as it is: every privcmd driver's result passes the VFS's `int error`
    # (fs/ioctl.c vfs_ioctl, torvalds/linux@011da44b:40-51), so none passes 64 bits. The
    # native mock's 64-bit "xenlinux" mode is for its own device tests only.
    if linux.peek("driver", "pvops") == "xenlinux":
        raise linux.fail("driver", "no Linux privcmd driver passes 64 bits: the VFS holds "
                                   "every ioctl result in an int (only pvops)")
    driver = linux.choice("driver", ("pvops",), "pvops")
    role = linux.choice("role", ("dom0", "domU"), "dom0")
    device = linux.choice("device", ("present", "absent", "eacces"), "present")
    sys_hyp = linux.get("sys_hypervisor", bool, True)
    self_domid = linux.int_in("self_domid", 0, hc.DOMID_FIRST_RESERVED - 1, 0)
    xenstored = linux.get("xenstored", bool, True)
    linux.done()

    hyp = top.table("hypervisor")
    bits = hyp.get("bits", int, 64)
    if bits != 64:  # x86 Xen is 64-bit only since 4.3; every release here is 4.13+
        raise hyp.fail("bits", f"x86 Xen is 64-bit only (since 4.3), got {bits}")
    clamp = hyp.get("compat_clamp", bool, False)
    census = hyp.get("census", bool, False)
    changeset = hyp.line("changeset", "xenprobe-mock", 64)
    commandline = hyp.line("commandline", "", 1024)
    build_id_size = hyp.int_in("build_id_size", 1, 1 << 16, 20)
    kexec_loaded = tuple(hyp.get("kexec_loaded", list, []))
    if not set(kexec_loaded) <= {"default", "crash"} or \
            len(set(kexec_loaded)) != len(kexec_loaded):
        raise hyp.fail("kexec_loaded", 'expected a list of "default" and "crash"')
    livepatch = hyp.get("livepatch", bool, True)
    # Xen caps one LIST at 1024 entries, not the count: a few thousand is plenty.
    payloads = hyp.int_in("livepatch_payloads", 0, 4096, 0)
    hangs = tuple(_hang(hyp, h) for h in hyp.get("hang", list, []))
    hyp.done()

    raw_domains = top.take("domain", [])
    if not isinstance(raw_domains, list) or not raw_domains:
        raise top.fail("domain", "at least one [[domain]] is required (dom0)")
    domains = tuple(_domain(where.key("domain").index(i), d)
                    for i, d in enumerate(raw_domains))
    ids = [d.domid for d in domains]
    if len(set(ids)) != len(ids):
        raise top.fail("domain", "domain ids must be unique")
    me = next((d for d in domains if d.domid == self_domid), None)
    if census and me is not None and me.vcpus > MAX_CENSUS_VCPUS:
        raise top.fail(f"domain[{domains.index(me)}].vcpus", f"the census model gives "
                       f"the caller at most {MAX_CENSUS_VCPUS} vCPUs")

    faults = tuple(_fault(where.key("fault").index(i), f)
                   for i, f in enumerate(top.take("fault", [])))
    top.done()

    used = sum(d.tot_pages for d in domains)
    free = host.pages("free_pages", max(total - used, 0)) if free_default is not None \
        else max(total - used, 0)
    host.done()
    # max_page may pass max_mfn + 1, as on a real host (hotplug-below-ram.toml).
    if not total <= max_page:
        raise host.fail("max_page", "needs total_pages <= max_page")

    return Scenario(name or printable(Path(source).stem), description, release,
                    (int(m.group(1)), int(m.group(2))), extraversion,
                    capabilities, sysctl_if, domctl_if, total, free, max_page, max_mfn,
                    nr_cpus, cpu_khz, driver, role, device, sys_hyp, bits, clamp,
                    self_domid, domains, faults, hangs, census, changeset, commandline,
                    build_id_size, kexec_loaded, payloads if livepatch else None,
                    xenstored)


def _domain(where: Where, raw: Any) -> Domain:
    if not isinstance(raw, dict):
        raise where.fail("expected a table")
    d = _Reader(where, raw)
    domid = d.get("id", int)
    if not 0 <= domid < hc.DOMID_FIRST_RESERVED:
        raise d.fail("id", f"must be below {hc.DOMID_FIRST_RESERVED:#x}")
    tot = d.pages("tot_pages", memory_key="memory")
    max_pages = d.pages("max_pages", tot, memory_key="max_memory")
    # struct domain keeps tot_pages and max_pages as unsigned int.
    for key, value in (("tot_pages", tot), ("max_pages", max_pages)):
        if value >= 1 << 32:
            raise d.fail(key, "Xen counts a domain's pages in 32 bits (16 TiB at most)")
    hvm = d.get("hvm", bool, False)
    max_gpfn = d.pages("max_gpfn", max(max_pages, 1) - 1)
    if "max_pfn" in raw:
        # A PV guest's own shared_info.arch.max_pfn, any 64-bit value it writes; Xen
        # answers XENMEM_maximum_gpfn with (max_pfn ?: 1) - 1 (domain_get_maximum_gpfn,
        # arch/x86/mm.c@RELEASE-4.14.0:469-475 @RELEASE-4.17.0:481-490
        # @RELEASE-4.20.0:477-486), which wraps to -errno or below for values near 2^64.
        if hvm:
            raise d.fail("max_pfn", "is a PV guest's shared_info field: an HVM domain's "
                         "maximum_gpfn is its p2m's (give max_gpfn)")
        if "max_gpfn" in raw:
            raise d.fail("max_pfn", "give either max_pfn (PV) or max_gpfn, not both")
        max_gpfn = ((d.pages("max_pfn") or 1) - 1) % (1 << 64)
    vcpus = d.int_in("vcpus", 1, U32_MAX, 1)
    offline = d.get("offline_vcpus", list, [])
    if not all(type(v) is int and 0 < v < min(vcpus, MAX_CENSUS_VCPUS) for v in offline) \
            or len(set(offline)) != len(offline):
        raise d.fail("offline_vcpus", "expected distinct vCPU ids from 1 to vcpus-1 "
                     "(vCPU 0 cannot be offlined)")
    flap = d.get("flap_vcpu", list, [])
    if flap and (len(flap) != 2 or not all(type(v) is int for v in flap)
                 or not 0 < flap[0] < min(vcpus, MAX_CENSUS_VCPUS)
                 or not 1 <= flap[1] <= U32_MAX):
        raise d.fail("flap_vcpu", "expected [VCPU, EVERY]: a vCPU from 1 to vcpus-1 and "
                     "a number of reads, 1 or more")
    vanish_after = d.get("vanish_after", int, ANY)
    if vanish_after == ANY:
        vanish_after = None
    elif not 0 <= vanish_after <= I64_MAX:
        raise d.fail("vanish_after", f"expected a number of lookups, 0 to {I64_MAX:#x}")
    elif domid == 0:
        raise d.fail("vanish_after", "domain 0 cannot vanish")
    balloon = None
    if "balloon" in raw:
        b = d.table("balloon")
        balloon = Balloon(b.int_in("step", -U32_MAX, U32_MAX), b.int_in("every", 1, U64_MAX, 1),
                          b.pages("min", tot), b.pages("max", max_pages))
        if balloon.step == 0:  # the mock's balloon moves every `every` reads
            raise b.fail("step", "expected a non-zero number of pages")
        if not balloon.low <= tot <= balloon.high:
            raise b.fail("min", "needs min <= tot_pages <= max")
        if balloon.high > U32_MAX:
            raise b.fail("max", "Xen counts a domain's pages in 32 bits (16 TiB at most)")
        b.done()
    name = d.get("name", str) if "name" in raw else None
    if name is not None and (not name or "\0" in name or len(name.encode()) > NAME_MAX):
        # xenstored refuses a node above quota_max_entry_size, 2048 bytes by default
        # (tools/xenstore/xenstored_core.c@RELEASE-4.17.0:107); xl writes a C string.
        raise d.fail("name", f"expected 1 to {NAME_MAX} bytes of text without NUL")
    d.done()
    return Domain(domid, tot, max_pages, max_gpfn, hvm, vcpus, balloon, vanish_after,
                  tuple(sorted(offline)), (flap[0], flap[1]) if flap else None, name)


def _op(r: _Reader, key: str) -> int:
    name = r.get(key, str)
    if name not in OPS:
        raise r.fail(key, f"expected one of {', '.join(OPS)}, got {name!r}")
    return OPS[name]


def _fault(where: Where, raw: Any) -> Fault:
    if not isinstance(raw, dict):
        raise where.fail("expected a table")
    f = _Reader(where, raw)
    kind = f.choice("kind", FAULT_KINDS, "errno")
    layer = f.choice("layer", FAULT_LAYERS, "hypervisor") if kind == "errno" else "hypervisor"
    if layer == "driver" and f.peek("op") == "any":
        f.take("op")
        op = ANY
    else:
        op = _op(f, "op")
    subop = f.get("subop", int, ANY)
    if not ANY <= subop <= 0xFFFFFFFF:
        raise f.fail("subop", "expected -1 (any) or 0..2^32-1")
    count = f.get("count", int, 1)
    if count == 0 or not ANY <= count <= I64_MAX:
        raise f.fail("count", f"expected 1 to {I64_MAX:#x}, or -1 for always")
    errno, via, usec = 0, "any", 0
    if kind == "errno":
        name = f.get("errno", str)
        if name not in ERRNOS:
            raise f.fail("errno", f"expected one of {', '.join(ERRNOS)}, got {name!r}")
        errno = ERRNOS[name]
        if layer == "driver":
            via = f.choice("via", FAULT_VIAS, "any")
    elif kind == "delay":
        ms = f.take("delay_ms")
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= 60_000:
            raise f.fail("delay_ms", "expected milliseconds, 0 to 60000")
        usec = round(ms * 1000)
    elif kind == "short" and op not in (hc.SYSCTL, hc.DOMCTL):
        raise f.fail("op", "a short answer needs a struct: sysctl or domctl")
    elif kind == "garbage" and op == hc.MULTICALL:
        raise f.fail("op", "garbage applies to each multicall entry's own op, not to "
                           "multicall")
    f.done()
    return Fault(op, subop, errno, count, kind, layer, via, usec)


def _hang(parent: _Reader, raw: Any) -> tuple[int, int]:
    if not isinstance(raw, dict):
        raise parent.fail("hang", "expected a list of {op, subop} tables")
    h = _Reader(parent.where.key("hang"), raw)
    op = _op(h, "op")
    subop = h.int_in("subop", ANY, U32_MAX, ANY)
    h.done()
    return op, subop


def _domain_record(s: Scenario, d: Domain) -> bytes:
    # The layout follows the interface version the hypervisor speaks.
    layout = getdomaininfo_for_domctl(s.domctl_interface)
    values: dict[str, int | bytes] = {
        "domain": d.domid,
        "flags": DOMINF_RUNNING | (DOMINF_HVM_GUEST if d.hvm else 0),
        "tot_pages": d.tot_pages,
        "max_pages": d.max_pages,
        "shared_info_frame": 0x1000 + d.domid,
        # getdomaininfo counts the vCPUs not down (common/domctl.c@RELEASE-4.17.0:92);
        # only a PV kernel takes its offline vCPUs down.
        "nr_online_vcpus": d.vcpus - (0 if d.hvm else len(d.offline_vcpus)),
        "max_vcpu_id": d.vcpus - 1,
        # Deterministic per domain, so two runs of a scenario compare byte for byte.
        "handle": uuid.uuid5(uuid.NAMESPACE_OID, f"xenprobe-{s.name}-{d.domid}").bytes,
    }
    if any(f.name == "gpaddr_bits" for f in layout.fields):
        values["gpaddr_bits"] = 52 if d.hvm else 0
    return layout.encode(values)


def _physinfo(s: Scenario) -> bytes:
    layout = physinfo_for_sysctl(s.sysctl_interface)
    return layout.encode({
        "threads_per_core": 1,
        "cores_per_socket": s.nr_cpus,
        "nr_cpus": s.nr_cpus,
        "max_cpu_id": s.nr_cpus - 1,
        "nr_nodes": 1,
        "max_node_id": 0,
        "cpu_khz": s.cpu_khz,
        "capabilities": 3,  # XEN_SYSCTL_PHYSCAP_hvm | _pv
        "total_pages": s.total_pages,
        "free_pages": s.free_pages,
        "max_mfn": s.max_mfn,
    })


def compile_text(s: Scenario) -> str:
    """The scenario as the native mock's directive list (see native/mock)."""
    lines = [
        f"# compiled from scenario {s.name} (Xen {s.release.name})",
        f"xen {s.reports_version[0]} {s.reports_version[1]}",
        f"extraversion {s.extraversion}",
        # A plain line loses leading and trailing blanks; real Xen's string ends in one.
        (f"capabilities {s.capabilities}" if s.capabilities == s.capabilities.strip()
         else f"capabilities_hex {s.capabilities.encode().hex()}"),
        f"sysctl_interface {s.sysctl_interface:#x}",
        f"domctl_interface {s.domctl_interface:#x}",
        f"getdomaininfo_exact {int(s.release.getdomaininfo_exact)}",
        f"getdomaininfo_size {getdomaininfo_for_domctl(s.domctl_interface).size}",
        f"physinfo {_physinfo(s).hex()}",
        f"max_page {s.max_page}",
        f"self_domid {s.self_domid}",
        f"hypervisor_bits {s.hypervisor_bits}",
        f"compat_clamp {int(s.compat_clamp)}",
        f"driver {s.driver}",
        f"role {s.role}",
        f"device {s.device}",
        f"sys_hypervisor {int(s.sys_hypervisor)}",
        f"guest_type {s.guest_type}",
        f"multicall {int(s.multicall)}",
    ]
    for d in s.domains:
        lines.append(f"domain {d.domid} {d.tot_pages} {d.max_pages} {d.max_gpfn} "
                     f"{_domain_record(s, d).hex()}")
        if d.balloon:
            b = d.balloon
            lines.append(f"balloon {d.domid} {b.step} {b.every} {b.low} {b.high}")
    lines.append(f"xenstored {int(s.xenstored)}")
    lines += [f"xenstore_name {d.domid} {d.name.encode().hex()}" for d in s.domains
              if d.name is not None]
    lines += [f"vanish {d.domid} {d.vanish_after}" for d in s.domains
              if d.vanish_after is not None]
    lines += [_fault_line(f) for f in s.faults]
    lines += [f"hang {op} {subop}" for op, subop in s.hangs]
    if s.census:
        # The dom0's own type: a PVH dom0 is an HVM domain to Xen.
        dom0 = next((d for d in s.domains if d.domid == s.self_domid), None)
        lines.append(f"census {'pvh' if dom0 is not None and dom0.hvm else 'pv'}")
        # Hex: the texts may hold spaces the directive tokenizer would split on.
        lines.append(f"census_text changeset {s.changeset.encode().hex() or '-'}")
        lines.append(f"census_text commandline {s.commandline.encode().hex() or '-'}")
        lines.append(f"census_build_id_size {s.build_id_size}")
        if dom0 is not None:
            lines.append(f"census_vcpus {dom0.vcpus}")
            lines += [f"census_vcpu_offline {v}" for v in dom0.offline_vcpus]
            if dom0.flap_vcpu is not None:
                lines.append(f"census_vcpu_flap {dom0.flap_vcpu[0]} {dom0.flap_vcpu[1]}")
        lines += [f"census_kexec_loaded {t}" for t in s.kexec_loaded]
        lp = s.livepatch_payloads
        lines.append(f"census_livepatch {'off' if lp is None else lp}")
    return "\n".join(lines) + "\n"


def _fault_line(f: Fault) -> str:
    if f.kind == "errno" and f.layer == "driver":
        return f"ioctl_fault {f.op} {f.subop} {f.errno} {f.count} {f.via}"
    if f.kind == "errno":
        return f"fault {f.op} {f.subop} {f.errno} {f.count}"
    if f.kind == "delay":
        return f"delay {f.op} {f.subop} {f.usec} {f.count}"
    return f"{f.kind} {f.op} {f.subop} {f.count}"


def shipped() -> list[str]:
    """Names of the scenarios shipped with xenprobe."""
    files = resources.files("xenprobe.mock.scenarios").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def load(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a TOML file by path."""
    if name_or_path in shipped():
        res = resources.files("xenprobe.mock.scenarios").joinpath(f"{name_or_path}.toml")
        return parse(res.read_text(), f"{name_or_path}.toml", name_or_path)
    path = Path(name_or_path)
    try:
        exists = path.exists()
    except OSError:  # a name too long to be a path: not a file either
        exists = False
    if not path.suffix == ".toml" and not exists:
        raise ScenarioError(f"no scenario named {name_or_path!r} (shipped: "
                            f"{', '.join(shipped())}; or give a path to a .toml file)")
    try:
        # Bytes, decoded as UTF-8 whatever the locale says (TOML is UTF-8).
        text = files.read_small(path).decode("utf-8")
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path}: not UTF-8 text") from None
    except ValueError as e:  # a NUL in the path
        raise ScenarioError(f"cannot read scenario {path!r}: {e}") from None
    return parse(text, str(path))
