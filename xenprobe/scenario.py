"""Mock host scenarios: TOML files that describe a Xen host and how its layers misbehave.

`load` validates a scenario and names the offending key on any error; `compile_text`
turns it into the flat directive list the native mock (native/mock) reads. Struct records
are packed here with the agent's own ABI tables, so the mock answers in the layout of
the scenario's Xen release.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xenprobe.abi import hypercalls as hc
from xenprobe.abi.layouts import DOMINF_HVM_GUEST, DOMINF_RUNNING
from xenprobe.abi.releases import (
    Release,
    by_name,
    getdomaininfo_for_domctl,
    physinfo_for_sysctl,
)
from xenprobe.errors import ScenarioError

PAGE = 4096
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "PiB": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]iB|B)\s*$")
ERRNOS = {"EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "EAGAIN": 11,
          "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "EBUSY": 16, "EINVAL": 22,
          "ENOSYS": 38}
OPS = {"memory_op": hc.MEMORY_OP, "xen_version": hc.XEN_VERSION, "sysctl": hc.SYSCTL,
       "domctl": hc.DOMCTL, "multicall": hc.MULTICALL}


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


@dataclass(frozen=True)
class Fault:
    op: int
    subop: int
    errno: int
    count: int


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


class _Reader:
    """Typed access to one TOML table that reports errors with the key's full path."""

    def __init__(self, source: str, table: dict[str, Any], where: str) -> None:
        self.source, self.table, self.where = source, table, where
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> ScenarioError:
        path = f"{self.where}.{key}" if self.where else key
        return ScenarioError(f"scenario {self.source}: {path}: {problem}")

    def get(self, key: str, kind: type, default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is None:
                raise self.fail(key, "is required")
            return default
        value = self.table[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        return value

    def pages(self, key: str, default: Any = None, *, memory_key: str | None = None) -> Any:
        """A page count, given as pages (`key`) or as a size (`memory_key` = "16 GiB")."""
        if memory_key and memory_key in self.table:
            self.used.add(memory_key)
            if key in self.table:
                raise self.fail(key, f"give either {key} or {memory_key}, not both")
            text = self.table[memory_key]
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

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value: str = self.get(key, str, default)
        if value not in options:
            raise self.fail(key, f"expected one of {', '.join(options)}, got {value!r}")
        return value

    def done(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise self.fail(extra[0], "is not a known key")


def _table(parent: _Reader, key: str) -> dict[str, Any]:
    parent.used.add(key)
    value = parent.table.get(key, {})
    if not isinstance(value, dict):
        raise parent.fail(key, "expected a table")
    return value


def parse(text: str, source: str, name: str = "") -> Scenario:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"scenario {source}: not valid TOML: {e}") from None
    top = _Reader(source, doc, "")
    description = top.get("description", str, "")

    xen = _Reader(source, _table(top, "xen"), "xen")
    try:
        release = by_name(xen.get("release", str))
    except KeyError as e:
        raise xen.fail("release", str(e.args[0])) from None
    extraversion = xen.get("extraversion", str, ".0")
    if len(extraversion.encode()) >= hc.XENVER_extraversion_len:
        raise xen.fail("extraversion", "must be shorter than 16 bytes")
    capabilities = xen.get("capabilities", str,
                           "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64")
    # What xen_version answers, when it is not the release whose layouts are used: a
    # build xenprobe does not know.
    reports = xen.get("reports_version", str, release.name)
    m = re.fullmatch(r"(\d+)\.(\d+)", reports)
    if not m or int(m.group(1)) > 0xFFFF or int(m.group(2)) > 0xFFFF:
        raise xen.fail("reports_version", f"expected MAJOR.MINOR, got {reports!r}")
    sysctl_if = xen.get("sysctl_interface", int, release.sysctl)
    domctl_if = xen.get("domctl_interface", int, release.domctl)
    xen.done()

    host = _Reader(source, _table(top, "host"), "host")
    total = host.pages("total_pages", memory_key="memory")
    max_page = host.pages("max_page", total)
    max_mfn = host.pages("max_mfn", max(max_page, 1) - 1)
    nr_cpus = host.get("nr_cpus", int, 4)
    cpu_khz = host.get("cpu_khz", int, 2_400_000)
    free_default = host.table.get("free_pages")

    linux = _Reader(source, _table(top, "linux"), "linux")
    driver = linux.choice("driver", ("pvops", "xenlinux"), "pvops")
    role = linux.choice("role", ("dom0", "domU"), "dom0")
    device = linux.choice("device", ("present", "absent", "eacces"), "present")
    sys_hyp = linux.get("sys_hypervisor", bool, True)
    self_domid = linux.get("self_domid", int, 0)
    linux.done()

    hyp = _Reader(source, _table(top, "hypervisor"), "hypervisor")
    bits = hyp.get("bits", int, 64)
    if bits not in (32, 64):
        raise hyp.fail("bits", f"expected 32 or 64, got {bits}")
    clamp = hyp.get("compat_clamp", bool, False)
    hangs = tuple(_hang(hyp, h) for h in hyp.get("hang", list, []))
    hyp.done()

    top.used.add("domain")
    raw_domains = doc.get("domain", [])
    if not isinstance(raw_domains, list) or not raw_domains:
        raise top.fail("domain", "at least one [[domain]] is required (dom0)")
    domains = tuple(_domain(source, d, i) for i, d in enumerate(raw_domains))
    ids = [d.domid for d in domains]
    if len(set(ids)) != len(ids):
        raise top.fail("domain", "domain ids must be unique")

    top.used.add("fault")
    faults = tuple(_fault(source, f, i) for i, f in enumerate(doc.get("fault", [])))
    top.done()

    used = sum(d.tot_pages for d in domains)
    free = host.pages("free_pages", max(total - used, 0)) if free_default is not None \
        else max(total - used, 0)
    host.done()
    if not total <= max_page <= max_mfn + 1:
        raise host.fail("max_page", "needs total_pages <= max_page <= max_mfn + 1")

    return Scenario(name or Path(source).stem, description, release,
                    (int(m.group(1)), int(m.group(2))), extraversion,
                    capabilities, sysctl_if, domctl_if, total, free, max_page, max_mfn,
                    nr_cpus, cpu_khz, driver, role, device, sys_hyp, bits, clamp,
                    self_domid, domains, faults, hangs)


def _domain(source: str, raw: Any, index: int) -> Domain:
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {source}: domain[{index}]: expected a table")
    d = _Reader(source, raw, f"domain[{index}]")
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
    vcpus = d.get("vcpus", int, 1)
    balloon = None
    if "balloon" in raw:
        b = _Reader(source, _table(d, "balloon"), f"domain[{index}].balloon")
        balloon = Balloon(b.get("step", int), b.get("every", int, 1),
                          b.pages("min", tot), b.pages("max", max_pages))
        if balloon.every < 1 or not balloon.low <= tot <= balloon.high:
            raise b.fail("min", "needs every >= 1 and min <= tot_pages <= max")
        b.done()
    d.done()
    return Domain(domid, tot, max_pages, max_gpfn, hvm, vcpus, balloon)


def _op(r: _Reader, key: str) -> int:
    name = r.get(key, str)
    if name not in OPS:
        raise r.fail(key, f"expected one of {', '.join(OPS)}, got {name!r}")
    return OPS[name]


def _fault(source: str, raw: Any, index: int) -> Fault:
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {source}: fault[{index}]: expected a table")
    f = _Reader(source, raw, f"fault[{index}]")
    op = _op(f, "op")
    subop = f.get("subop", int, -1)
    name = f.get("errno", str)
    if name not in ERRNOS:
        raise f.fail("errno", f"expected one of {', '.join(ERRNOS)}, got {name!r}")
    count = f.get("count", int, 1)
    f.done()
    return Fault(op, subop, ERRNOS[name], count)


def _hang(parent: _Reader, raw: Any) -> tuple[int, int]:
    if not isinstance(raw, dict):
        raise parent.fail("hang", "expected a list of {op, subop} tables")
    h = _Reader(parent.source, raw, "hypervisor.hang")
    op = _op(h, "op")
    subop = h.get("subop", int, -1)
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
        "nr_online_vcpus": d.vcpus,
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
        f"capabilities {s.capabilities}",
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
    ]
    for d in s.domains:
        lines.append(f"domain {d.domid} {d.tot_pages} {d.max_pages} {d.max_gpfn} "
                     f"{_domain_record(s, d).hex()}")
        if d.balloon:
            b = d.balloon
            lines.append(f"balloon {d.domid} {b.step} {b.every} {b.low} {b.high}")
    lines += [f"fault {f.op} {f.subop} {f.errno} {f.count}" for f in s.faults]
    lines += [f"hang {op} {subop}" for op, subop in s.hangs]
    return "\n".join(lines) + "\n"


def shipped() -> list[str]:
    """Names of the scenarios shipped with xenprobe."""
    files = resources.files("xenprobe.scenarios").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def load(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a TOML file by path."""
    if name_or_path in shipped():
        res = resources.files("xenprobe.scenarios").joinpath(f"{name_or_path}.toml")
        return parse(res.read_text(), f"{name_or_path}.toml", name_or_path)
    path = Path(name_or_path)
    if not path.suffix == ".toml" and not path.exists():
        raise ScenarioError(f"no scenario named {name_or_path!r} (shipped: "
                            f"{', '.join(shipped())}; or give a path to a .toml file)")
    try:
        text = path.read_text()
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path}: not UTF-8 text") from None
    return parse(text, str(path))
