# SPDX-License-Identifier: GPL-2.0-only
"""Independent checks of xenprobe reports, shared by this tier's tests.

Nothing here imports xenprobe's classifier: each verdict's meaning is restated as a
relation between two readings taken by the independent reader (reader.py), from the
verdict definitions in xenprobe/probe/classify.py's docstrings and the README.  A reported
mismatch is "real" when the reader, reading the same quantity for the same subject
through the same path, gets the same two readings and they stand in that relation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

U32 = 1 << 32
U64 = 1 << 64
INT32_MAX = (1 << 31) - 1
INT32_MIN = -(1 << 31)
MAX_ERRNO = 4095
DOMID_SELF = 0x7FF0
DOMINF_HVM_GUEST = 1 << 1  # xen/include/public/domctl.h
ENOSYS = 38

# Agent layer name -> the reader's reading of the same path.
READER_PATH = {"ioctl": "ioctl", "syscall": "syscall"}

# (quantity, domid as passed: DOMID_SELF for self; the vcpuid for a vcpu subject)
Probe = tuple[str, int | None]


def int_path_verdict(raw: int) -> str:
    """What the int paths (glibc's ioctl(), syscall(SYS_ioctl)) make of a raw result in
    [2^31, 2^32): a negative int, which glibc turns into -1 + errno in [-4095, -1]."""
    return "aliased_errno" if raw >= U32 - MAX_ERRNO else "sign_flipped"


def probe_key(result: dict[str, Any]) -> Probe:
    if result["subject"] == "vcpu":
        return (result["quantity"], result["vcpu"])
    return (result["quantity"], result["domid"])


def reader_probes(reader: dict[str, Any]) -> dict[Probe, dict[str, Any]]:
    return {(p["quantity"], p["vcpu"] if p.get("vcpu") is not None else p["domid"]): p
            for p in reader.get("probes", [])}


def cpu_list(text: str | None) -> set[int] | None:
    """A sysfs CPU list ("0-3,5"), restated here (compare.py imports no xenprobe)."""
    if text is None:
        return None
    out: set[int] = set()
    for part in filter(None, text.strip().split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def raw_failed(raw: int) -> bool:
    return -MAX_ERRNO <= raw <= -1


def reader_layer(probe: dict[str, Any], layer: str) -> tuple[int, int]:
    """(value, errno) as the agent writes a layer reading: errno 0 for a value."""
    got = probe[READER_PATH[layer]]
    return int(got["ret"]), int(got["errno"])


def relation_holds(verdict: str, raw: int, value: int, errno: int) -> bool:
    """Does a layer reading (value, errno) relate to the raw 64-bit result as `verdict`
    says?  raw is signed (-errno for a hypervisor error)."""
    failed = errno != 0
    if raw_failed(raw):
        if verdict == "match":
            return failed and errno == -raw
        if verdict == "lost_error":
            return not failed
        if verdict == "changed_error":
            return failed and errno != -raw
        return False
    u = raw % U64
    if verdict == "match":
        return not failed and value % U64 == u
    if verdict == "aliased_errno":  # a value whose (low 32 bits or all) read as -errno
        return failed and (u % U32 == U32 - errno or u == U64 - errno)
    if failed:
        return False
    if verdict == "sign_flipped":  # an unsigned 32-bit value read as a signed int
        return 1 << 31 <= u < U32 and value == u - U32
    if verdict == "truncated":  # high bits lost
        low = u % U32
        return u >= U32 and value in (low, low - U32)
    if verdict == "clamped":  # pinned to INT_MAX / INT_MIN
        return (value == INT32_MAX and u > INT32_MAX) or (value == INT32_MIN and u >= 1 << 63)
    if verdict == "other":
        return value % U64 != u
    return False


def reference_holds(reference: dict[str, int], raw: int) -> bool:
    """Is raw what the independent reference says (an errno, or within [lo, hi])?"""
    if "errno" in reference:
        return raw == -reference["errno"]
    return reference["lo"] <= raw % U64 <= reference["hi"]


# Not mismatches: a raw result wrong at the source, and a layer that passed a forged
# error on (docs/forged-errnos.md).
SOURCE_FINDINGS = ("forged_errno", "out_of_range", "passed_forged")
_NOT_MISMATCHES = ("match", "absent", "drift", *SOURCE_FINDINGS)


def mismatches(result: dict[str, Any]) -> dict[str, str]:
    """layer -> verdict for each layer (and "raw") whose verdict is a mismatch: not
    match, absent, drift, nor a finding at the source."""
    out = {name: layer["verdict"] for name, layer in result["layers"].items()
           if layer["verdict"] not in _NOT_MISMATCHES}
    if result.get("raw_verdict") not in (None, *_NOT_MISMATCHES):
        out["raw"] = result["raw_verdict"]
    return out


def source_findings(result: dict[str, Any]) -> dict[str, str]:
    """layer -> verdict for each layer (and "raw") wrong at the source."""
    out = {name: layer["verdict"] for name, layer in result["layers"].items()
           if layer["verdict"] in SOURCE_FINDINGS}
    if result.get("raw_verdict") in SOURCE_FINDINGS:
        out["raw"] = result["raw_verdict"]
    return out


# --------------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus text exposition format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def samples(metrics: Iterable[tuple[str, dict[str, str], float]], name: str
            ) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(labels.items())): value for n, labels, value in metrics if n == name}


# ------------------------------------------------------------ scenario from readings


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scenario_from_readings(reader: dict[str, Any], *, description: str) -> str:
    """A mock-host scenario (TOML) describing the host the reader saw: release and
    extraversion from xen_version, the interface versions it detected, physinfo,
    the raw maximum_ram_page, and every domain from getdomaininfolist with its raw
    maximum_gpfn.  The dom0 kernel is pvops Linux (Debian's 6.1), with /sys/hypervisor."""
    ver = int(reader["xen_version"])
    phys = reader["physinfo"]
    probes = reader_probes(reader)
    max_page = probes[("maximum_ram_page", None)]["multicall"]
    linux = reader.get("linux", {})
    sys_hyp = (linux.get("sys_hypervisor") or {}).get("type") == "xen"
    text = reader["xen_text"]
    # dom0's CPUs its kernel has offline, and the kexec image types whose status bit
    # reads 1 (a negative reading: -ENOSYS on PVH, nothing to model).
    cpus = linux.get("cpus") or {}
    possible, online = cpu_list(cpus.get("possible")), cpu_list(cpus.get("online"))
    offline = sorted(possible - online) if possible is not None and online is not None \
        else []
    kexec = [q.removeprefix("kexec_status_")
             for q, v in (reader.get("kexec_status") or {}).items() if v == 1]
    lines = [
        f"description = {_toml_str(description)}",
        "",
        "[xen]",
        f'release = "{ver >> 16}.{ver & 0xFFFF}"',
        f"extraversion = {_toml_str(reader['xen_extraversion'])}",
        f"capabilities = {_toml_str(text['capabilities'])}",
        f"sysctl_interface = {int(reader['sysctl_interface_version']):#x}",
        f"domctl_interface = {int(reader['domctl_interface_version']):#x}",
        "",
        "[host]",
        f"total_pages = {phys['total_pages']}",
        f"max_page = {max_page}",
        f"max_mfn = {phys['max_mfn']}",
        f"free_pages = {phys['free_pages']}",
        f"nr_cpus = {phys['nr_cpus']}",
        "",
        "[linux]",
        'driver = "pvops"',
        'role = "dom0"',
        f"sys_hypervisor = {'true' if sys_hyp else 'false'}",
        "self_domid = 0",
        "",
        "[hypervisor]",
        "bits = 64",
        # The census's other calls, with the texts and build-id size this host has; the
        # dom0's own type (PV or PVH) follows from its domain record below.
        "census = true",
        f"changeset = {_toml_str(text['changeset'])}",
        f"commandline = {_toml_str(text['commandline'])}",
        f"build_id_size = {int(reader['build_id_size'])}",
        f"kexec_loaded = [{', '.join(_toml_str(t) for t in kexec)}]",
        *_livepatch_lines(reader.get("livepatch")),
    ]
    for d in reader["domains"]:
        gpfn = probes[("maximum_gpfn", d["domain"])]["multicall"]
        lines += [
            "",
            "[[domain]]",
            f"id = {d['domain']}",
            f"tot_pages = {d['tot_pages']}",
            f"max_pages = {d['max_pages']}",
            # As Xen's unsigned long: a PV guest's max_pfn may make it read negative.
            f"max_gpfn = {gpfn % 2**64:#x}",
            f"hvm = {'true' if d['flags'] & DOMINF_HVM_GUEST else 'false'}",
            f"vcpus = {max(1, d['max_vcpu_id'] + 1)}",
        ]
        if d["domain"] == 0 and offline:
            lines.append(f"offline_vcpus = [{', '.join(map(str, offline))}]")
    return "\n".join(lines) + "\n"


def _livepatch_lines(lp: dict[str, Any] | None) -> list[str]:
    """The scenario's livepatch keys from the reader's LIST (nr 0): the payload count Xen
    wrote back, or a build without CONFIG_LIVEPATCH where LIST answered ENOSYS."""
    if not lp or "ret" not in lp:
        return []
    if lp["ret"] == -1 and lp["errno"] == ENOSYS:
        return ["livepatch = false"]
    return [f"livepatch_payloads = {int(lp['nr'])}"]


# ------------------------------------------------------------------ report vs report

RESULT_FIELDS = ("raw", "raw_verdict", "reference", "bits", "at_risk", "attempts")


def _without_uuids(summary: Any) -> Any:
    """The summary less its domains' UUIDs: the reader's output carries no domain handle,
    so the mock built from it makes up its own (a domain's UUID is the toolstack's, not a
    reading)."""
    if not isinstance(summary, dict):
        return summary
    tops = summary.get("top_domains")
    if not isinstance(tops, list):
        return summary
    return {**summary, "top_domains": [{k: v for k, v in d.items() if k != "uuid"}
                                       for d in tops]}


def diff_reports(real: dict[str, Any], mock: dict[str, Any]) -> list[str]:
    """Every field where two `xenprobe check --json` reports differ, as
    "path: real=... mock=..." lines (timings and the mock scenario name excluded)."""
    out: list[str] = []

    def cmp(path: str, a: Any, b: Any) -> None:
        if a != b:
            out.append(f"{path}: real={a!r} mock={b!r}")

    for key in sorted(set(real["host"]) | set(mock["host"])):
        cmp(f"host.{key}", real["host"].get(key), mock["host"].get(key))
    for key in ("domains", "layers", "notes", "exit_code"):
        cmp(key, real.get(key), mock.get(key))
    cmp("summary", _without_uuids(real.get("summary")), _without_uuids(mock.get("summary")))

    def probe_id(r: dict[str, Any]) -> tuple[str, str, int | None, int | None]:
        return (r["quantity"], r["subject"], r["domid"], r.get("vcpu"))

    real_probes = [probe_id(r) for r in real["results"]]
    mock_probes = [probe_id(r) for r in mock["results"]]
    cmp("probes", real_probes, mock_probes)
    mock_by = {probe_id(r): r for r in mock["results"]}
    for r in real["results"]:
        m = mock_by.get(probe_id(r))
        if m is None:
            continue
        where = f"{r['quantity']}/{r['subject']}/{r['domid']}" + (
            f"/{r['vcpu']}" if r.get("vcpu") is not None else "")
        for f in RESULT_FIELDS:
            cmp(f"{where}.{f}", r.get(f), m.get(f))
        for layer in sorted(set(r["layers"]) | set(m["layers"])):
            cmp(f"{where}.layers.{layer}", r["layers"].get(layer), m["layers"].get(layer))
    return out
