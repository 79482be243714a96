# SPDX-License-Identifier: GPL-2.0-only
"""xenprobe on a real hypervisor: Xen 4.14, 4.17 and 4.20 under QEMU, one shared boot each.

In that boot (session.py) dom0 runs `xenprobe check --json` and, afterwards, the
independent reader (reader.py: plain ctypes, nothing from xenprobe), asked to re-read
every (quantity, domid) the agent probed through the same three paths: a one-entry
multicall (the raw 64-bit result), glibc's int ioctl() and syscall(SYS_ioctl)'s long.
Extra paused PV domains are created first (mkdomains.py, session.EXTRA_DOMAINS): on
4.17 through Debian's real libxenctrl, on 4.14 and 4.20 through raw domctl / memory_op
hypercalls on privcmd; two of them are allowed 2^31 + 12345 and 2^32 - 1 pages (a limit,
not an allocation), and three have a shared_info max_pfn written as a PV guest writes
its own, which makes their maximum_gpfn 2^31 + 12345, 0xFFFFFFFE and 2^32 + 4096: raw
results at and above 2^31 exist on a small host. Three more (session.FORGED_MAX_PFN) set
max_pfn so that maximum_gpfn is -3, -22 and 0x8000000000000000: wrong at the source.
Debian's libxenctrl of each release (bullseye 4.14.6, bookworm 4.17, trixie 4.20) is on
the check's loader path.

The only constants below are documented ABI facts (interface versions, errno values).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from xenprobe.xen.quantities import CENSUS, UNBATCHED

from .boot import EXPECTED_XEN_VERSION
from .compare import (
    DOMID_SELF,
    READER_PATH,
    SOURCE_FINDINGS,
    U32,
    cpu_list,
    int_path_verdict,
    mismatches,
    parse_metrics,
    probe_key,
    raw_failed,
    reader_layer,
    reader_probes,
    reference_holds,
    relation_holds,
    samples,
    source_findings,
)
from .session import DOMAIN_BACKENDS, SERVE_SWEEPS, Session, serve_ready

if TYPE_CHECKING:
    from .conftest import RealXen

pytestmark = pytest.mark.realxen

# XEN_SYSCTL_INTERFACE_VERSION / XEN_DOMCTL_INTERFACE_VERSION of each release
# (xen/include/public/sysctl.h, domctl.h at RELEASE-4.17.x and RELEASE-4.20.x).
INTERFACES = {"4.14": (0x13, 0x12), "4.17": (0x15, 0x15), "4.20": (0x15, 0x17)}
ESRCH = 3
PAGE_KIB = 4
XEN_DOMINF_PAUSED = 1 << 3  # paused by the controller: nothing unpauses these domains
XEN_DOMCTL_CDF_OOS_OFF = 1 << 3  # Xen sets it for every PV domain (arch_sanitise_domain_config)


# The census quantities (tests.census) against what the hypervisor or the kernel says
# elsewhere: the *2 lengths against the fixed-size subops' strings and the kernel's
# sysfs copies (drivers/xen/sys-hypervisor.c prints them with "%s\n").
def _length(text_key: str, sysfs_key: str | None) -> Any:
    def check(raw: int, r: dict[str, Any]) -> tuple[bool, str]:
        text = r["xen_text"][text_key] if text_key != "extra" else r["xen_extraversion"]
        sysfs = r["linux"]["sys_hypervisor"].get(sysfs_key) if sysfs_key else None
        ok = raw == len(text) and (sysfs is None or sysfs == text.strip())
        return ok, f"xen_version string {text!r}, sysfs {sysfs!r}"
    return check


CENSUS_CHECKS = {
    # x86 Xen's PAGE_SIZE (4 KiB) is the dom0 kernel's as well.
    "xen_pagesize": lambda raw, r: (raw == 4096, "x86 page size 4096"),
    # The build-id note's size is what the length query of the reader's own read said.
    "build_id_size": lambda raw, r: (raw == r["build_id_size"], "reader's build_id query"),
    "extraversion_len": _length("extra", "extra"),
    "capabilities_len": _length("capabilities", "capabilities"),
    "changeset_len": _length("changeset", "changeset"),
    "commandline_len": _length("commandline", None),
    # DR6 at rest on a PV dom0: the architectural reset value (x86-defns.h X86_DR6_DEFAULT).
    "debug_register_6": lambda raw, r: (
        raw == X86_DR6_DEFAULT and r["linux"]["sys_hypervisor"]["guest_type"] == "PV",
        f"DR6 reset value {X86_DR6_DEFAULT:#x}, guest_type "
        f"{r['linux']['sys_hypervisor']['guest_type']}"),
    # Nothing shares memory on this host (and a default build has no sharing at all).
    "sharing_freed_pages": lambda raw, r: (raw == 0, "no shared frames"),
    "sharing_shared_pages": lambda raw, r: (raw == 0, "no shared frames"),
    "hypfs_version": lambda raw, r: (raw == XEN_HYPFS_VERSION, "XEN_HYPFS_VERSION"),
    # Nothing in the test dom0 runs kexec-tools, so no image was ever loaded: each
    # type's slot bit is still 0 (common/kexec.c kexec_status), as the reader read it.
    "kexec_status_default": lambda raw, r: (
        raw == 0 == r["kexec_status"]["kexec_status_default"], "no kexec image loaded"),
    "kexec_status_crash": lambda raw, r: (
        raw == 0 == r["kexec_status"]["kexec_status_crash"], "no kexec image loaded"),
    # sizeof(struct dom0_vga_console_info) as Xen compiles it (xen.h, 4.18+; only probed
    # where the hypervisor answers it).
    "dom0_console_size": lambda raw, r: (raw == DOM0_VGA_CONSOLE_INFO_SIZE,
                                         "sizeof(dom0_vga_console_info) 40"),
    # nr_done of one MSR_READ of MSR_IA32_TSC, which Xen always allows: the entry asked.
    "resource_op_done": lambda raw, r: (raw == 1, "one entry asked"),
}


def vcpu_is_up_check(raw: int, vcpu: int, r: dict[str, Any]) -> tuple[bool, str]:
    """A PV dom0's CPU n is its vCPU n, and Linux takes an offline CPU down with
    VCPUOP_down (arch/x86/xen/smp_pv.c): up in Xen exactly when online in Linux. A PVH
    dom0 does not take it down, so there only vCPUs online in Linux must be up."""
    cpus = r["linux"]["cpus"]
    online = cpu_list(cpus["online"])
    possible = cpu_list(cpus["possible"])
    pv = r["linux"]["sys_hypervisor"]["guest_type"] == "PV"
    why = f"possible {cpus['possible']!r}, online {cpus['online']!r}, PV {pv}"
    if online is None or possible is None or vcpu not in possible:
        return False, why
    if pv:
        return raw == (1 if vcpu in online else 0), why
    return raw == 1 if vcpu in online else raw in (0, 1), why
X86_DR6_DEFAULT = 0xFFFF0FF0
XEN_HYPFS_VERSION = 1  # xen/include/public/hypfs.h
DOM0_VGA_CONSOLE_INFO_SIZE = 40  # xen/include/public/xen.h, gcc on x86-64


@pytest.fixture
def s(realxen: RealXen) -> Session:
    sess = realxen.session()
    if sess.check is None or sess.reader is None:
        raise AssertionError(f"the session boot produced no check/reader JSON\n{sess.report()}")
    return sess


def fail(sess: Session, what: str) -> AssertionError:
    return AssertionError(f"Xen {sess.release}: {what}\n{sess.report()}")


def results(sess: Session) -> list[dict[str, Any]]:
    """The results with a raw reading: every probe but the UNBATCHED ones (a sysctl
    never goes in a multicall), which test_livepatch_list_on_real_xen covers."""
    return [r for r in all_results(sess) if r["quantity"] not in UNBATCHED_QUANTITIES]


def all_results(sess: Session) -> list[dict[str, Any]]:
    assert sess.check is not None
    return list(sess.check["results"])


UNBATCHED_QUANTITIES = {q.value for q in UNBATCHED}


def reader(sess: Session) -> dict[str, Any]:
    assert sess.reader is not None
    return sess.reader


def test_check_ran_and_exit_code_states_the_findings(s: Session) -> None:
    assert s.check is not None
    step = s.steps.get("check")
    if step is None or step.rc not in (0, 1):
        raise fail(s, f"xenprobe check exit status {step}; 0 or 1 expected")
    found = [r for r in all_results(s) if mismatches(r) or at_source(r)]
    if s.check["exit_code"] != step.rc or step.rc != (1 if found else 0):
        raise fail(s, f"exit {step.rc}, JSON exit_code {s.check['exit_code']}, "
                      f"{len(found)} results with mismatches")
    assert s.check["mock_scenario"] is None
    assert s.steps["reader"].rc == 0, s.report()


def test_check_json_matches_the_shipped_schema(s: Session) -> None:
    """The real dom0's report, like every mock scenario's, is what docs/json.md says."""
    from tests.report_schema import validate

    validate(s.check)


def test_detects_release_and_interface_versions(s: Session, realxen: RealXen) -> None:
    host = s.check["host"] if s.check else {}
    r = reader(s)
    ver = r["xen_version"]
    assert ver == EXPECTED_XEN_VERSION[realxen.release]
    sysfs = r["linux"]["sys_hypervisor"]
    # The version string from the hypervisor (XENVER_version + XENVER_extraversion),
    # the dom0 kernel's /sys/hypervisor, and the Debian package that was booted.
    assert host["version"] == f"{ver >> 16}.{ver & 0xFFFF}{r['xen_extraversion']}"
    assert host["version"] == f"{sysfs['major']}.{sysfs['minor']}{sysfs['extra']}"
    # Debian packages a stable branch snapshot, "X.Y.Z+N-g<hash>-<debian revision>": N
    # commits past the RELEASE-X.Y.Z tag, where the tree says ".Z" until the branch is
    # bumped and ".(Z+1)-pre" after (seen: 4.17.7+13 -> ".7", 4.20.4+63 -> ".5-pre").
    package = realxen.assets.versions[f"xen-hypervisor-{realxen.release}-amd64"]
    m = re.match(r"(\d+)\.(\d+)\.(\d+)(?:\+(\d+)-g[0-9a-f]+)?", package)
    assert m, package
    assert f"{m.group(1)}.{m.group(2)}" == host["release"], package
    point = int(m.group(3))
    allowed = {f".{point}"} | ({f".{point + 1}-pre"} if m.group(4) else set())
    assert r["xen_extraversion"] in allowed, (package, r["xen_extraversion"])
    assert host["release"] == realxen.release
    sysctl, domctl = INTERFACES[realxen.release]
    assert host["sysctl_interface"] == r["sysctl_interface_version"] == sysctl
    assert host["domctl_interface"] == r["domctl_interface_version"] == domctl


def test_every_raw_reading_agrees_with_an_independent_source(s: Session) -> None:
    """raw (the agent's multicall result) against what the hypervisor says elsewhere."""
    r = reader(s)
    phys = r["physinfo"]
    info = r["getdomaininfo"]
    listed = {d["domain"]: d for d in r["domains"]}
    sysfs = r["linux"]["sys_hypervisor"]
    problems = []
    for res in results(s):
        raw, q, domid = res["raw"]["value"], res["quantity"], res["domid"]
        where = f"{q} {res['subject']} {domid}: raw {raw}"
        if q == "xen_version":
            kernel = (int(sysfs["major"]) << 16) | int(sysfs["minor"])
            ok = raw == kernel == r["xen_version"]
            why = f"/sys/hypervisor {kernel:#x}, reader {r['xen_version']:#x}"
        elif q == "maximum_ram_page":
            # max_page is the highest RAM frame + 1: at least physinfo's total_pages.
            # max_mfn is no upper bound (it follows the hot-plug range's end, and is
            # capped at 2^32 without CONFIG_BIGMEM: x86/mm.c get_upper_mfn_bound).
            ok = phys["total_pages"] <= raw
            why = f"physinfo total_pages {phys['total_pages']}"
        elif q == "vcpu_is_up":
            ok, why = vcpu_is_up_check(raw, res["vcpu"], r)
        elif q in CENSUS_CHECKS:
            ok, why = CENSUS_CHECKS[q](raw, r)
        elif res["subject"] == "missing":
            ok = raw == -ESRCH and domid not in listed
            why = "a domain id getdomaininfolist does not list: ESRCH"
        elif q in ("current_reservation", "maximum_reservation"):
            d = 0 if domid == DOMID_SELF else domid  # DOMID_SELF: the caller, dom0
            field = "tot_pages" if q == "current_reservation" else "max_pages"
            dom = info.get(str(d), {})
            ok = dom.get("domain") == d and raw == dom.get(field) == listed[d][field]
            why = f"getdomaininfo({d}).{field} {dom.get(field)}, list {listed[d][field]}"
        else:
            # maximum_gpfn has no independent source.  dom0's kernel set its pfn space
            # (shared_info max_pfn), which covers every page it holds.  Other domains:
            # the reader's re-read (test_agent_reads_what_the_reader_reads) and, for
            # those created here, Xen's source (test_extra_domains_are_probed_and_agree).
            tot = listed[domid]["tot_pages"]
            ok = domid != 0 or raw + 1 >= tot
            why = f"dom0 tot_pages {tot}"
        if not ok:
            problems.append(f"{where} vs {why}")
        if res["reference"] is not None and not reference_holds(res["reference"], raw):
            problems.append(f"{where} outside the agent's own reference {res['reference']}")
    if problems:
        raise fail(s, "\n".join(problems))
    assert {res["domid"] for res in results(s) if res["subject"] == "domain"} == set(listed)
    assert s.check is not None and s.check["domains"] == len(listed)


def test_dom0_reservation_agrees_with_linux(s: Session) -> None:
    """DOMID_SELF is dom0; the dom0 kernel's own accounting matches Xen's.

    - balloon driver: current_kb is the pages the kernel holds (start_info nr_pages,
      adjusted for every page it released or ballooned), so it equals Xen's tot_pages
      in KiB; target_kb equals it while nothing is ballooning (this dom0 never does).
    - dom0_mem=NM,max:NM on Xen's command line (boot.py) sets max_pages.
    - /proc/meminfo MemTotal is what is left after the kernel's own reservations
      (image, struct page array, ...): at most current_kb, and here at least 3/4 of it.
    """
    by = {probe_key(res): res for res in results(s)}
    cur_self = by[("current_reservation", DOMID_SELF)]["raw"]["value"]
    max_self = by[("maximum_reservation", DOMID_SELF)]["raw"]["value"]
    assert cur_self == by[("current_reservation", 0)]["raw"]["value"]
    assert max_self == by[("maximum_reservation", 0)]["raw"]["value"]
    linux = reader(s)["linux"]
    balloon, meminfo = linux["balloon"], linux["meminfo"]
    assert balloon["current_kb"] == cur_self * PAGE_KIB, balloon
    assert balloon["target_kb"] == balloon["current_kb"], balloon
    m = re.search(r"dom0_mem=(\d+)M,max:(\d+)M", " ".join(s.run.command))
    assert m, s.run.command
    assert max_self * PAGE_KIB == int(m.group(2)) * 1024
    assert cur_self <= max_self
    assert 0.75 * balloon["current_kb"] <= meminfo["MemTotal"] <= balloon["current_kb"]


def test_agent_reads_what_the_reader_reads(s: Session) -> None:
    """Nothing is reported that the independent reader does not see: every raw value and
    every layer reading of the agent is what the reader got through the same path."""
    seen = reader_probes(reader(s))
    problems = []
    for res in results(s):
        key = probe_key(res)
        p = seen.get(key)
        if p is None:
            problems.append(f"{key}: the reader did not read it")
            continue
        if p["multicall"] != p["multicall_after"]:
            problems.append(f"{key}: moved while the reader read it: {p}")
        if res["raw"]["value"] != p["multicall"]:
            problems.append(f"{key}: raw {res['raw']} vs reader multicall {p['multicall']}")
        for layer, got in res["layers"].items():
            if layer not in READER_PATH:
                assert got["verdict"] == "absent" or layer == "libxc", (layer, got)
                continue
            if (got["value"], got["errno"]) != reader_layer(p, layer):
                problems.append(f"{key} {layer}: agent {got} vs reader {p[layer]}")
        if not mismatches(res):
            # All match: the reader's own int/long readings agree with its raw one.
            for layer in READER_PATH:
                value, errno = reader_layer(p, layer)
                if not relation_holds("match", p["multicall"], value, errno):
                    problems.append(f"{key}: all match, but the reader's {layer} {p[layer]} "
                                    f"differs from its raw {p['multicall']}")
    if problems:
        raise fail(s, "\n".join(problems))


def test_every_reported_mismatch_is_real(s: Session) -> None:
    """Each mismatch verdict: the reader's re-read of both sides differs exactly as the
    verdict says (compare.relation_holds restates each verdict independently)."""
    seen = reader_probes(reader(s))
    problems = []
    confirmed = []
    for res in results(s):
        p = seen[probe_key(res)]
        for layer, verdict in mismatches(res).items():
            if layer == "raw":
                if reference_holds(res["reference"], p["multicall"]):
                    problems.append(f"{probe_key(res)}: raw {verdict}, but the reader's "
                                    f"{p['multicall']} is within {res['reference']}")
                continue
            if layer == "libxc":
                # libxenctrl's own reading: the verdict must state how it differs from
                # the reader's re-read of the raw value.
                got = res["layers"][layer]
                value, errno = got["value"], got["errno"]
            elif layer not in READER_PATH:
                problems.append(f"{probe_key(res)} {layer}: {verdict}, no independent "
                                f"re-read for this layer")
                continue
            else:
                value, errno = reader_layer(p, layer)
            if relation_holds(verdict, p["multicall"], value, errno):
                confirmed.append(f"{probe_key(res)} {layer} {verdict}")
            else:
                problems.append(f"{probe_key(res)} {layer}: {verdict} not confirmed: reader "
                                f"raw {p['multicall']}, {layer} {p[layer]}")
    if problems:
        raise fail(s, "\n".join(problems))
    print(f"Xen {s.release}: confirmed {confirmed or 'no mismatches (none reported)'}")


def test_no_mismatch_below_2_31_and_every_int_path_fails_above(s: Session) -> None:
    """Every value that fits an int reaches user space intact; every value that does
    not cannot pass a 32-bit int unchanged (pvops Linux's ioctl syscall returns int,
    so that holds for the syscall layer as well as glibc's ioctl) and must be flagged."""
    for res in results(s):
        raw = res["raw"]["value"]
        where = f"{probe_key(res)} raw {raw}: {res['layers']}"
        if raw_failed(raw) or 0 <= raw <= (1 << 31) - 1:
            assert not mismatches(res), where
        else:
            assert res["layers"]["ioctl"]["verdict"] != "match", where
            assert "int32" in res["at_risk"], where


def test_the_error_path_gives_esrch_everywhere(s: Session) -> None:
    missing = [res for res in results(s) if res["subject"] == "missing"]
    assert len(missing) == 1
    res = missing[0]
    assert res["raw"] == {"value": -ESRCH, "errno": ESRCH, "width": 64}
    assert res["reference"] == {"errno": ESRCH}
    assert res["raw_verdict"] == "match"
    for layer in READER_PATH:
        got = res["layers"][layer]
        assert (got["value"], got["errno"], got["verdict"]) == (-1, ESRCH, "match"), layer
    p = reader_probes(reader(s))[probe_key(res)]
    assert p["multicall"] == -ESRCH
    assert p["ioctl"] == p["syscall"] == {"ret": -1, "errno": ESRCH}


def at_source(res: dict[str, Any]) -> bool:
    """A raw result wrong at the source (docs/forged-errnos.md)."""
    return res["raw_verdict"] in SOURCE_FINDINGS


def test_guest_forged_max_pfn_is_judged_at_the_source(s: Session) -> None:
    """PV domains that wrote their own shared_info max_pfn as 0xfffffffffffffffe,
    0xffffffffffffffeb and 0x8000000000000001 (session.FORGED_MAX_PFN): Xen answers
    maximum_gpfn with -3, -22 and 0x8000000000000000 ((max_pfn ?: 1) - 1,
    domain_get_maximum_gpfn). ESRCH for a domain getdomaininfo lists and EINVAL, which
    maximum_gpfn never returns, are forged; the layers that pass them on say so; the
    third is out of range whatever the layers do. Worded as the guest's doing. No real
    error is called forged, and nothing else on the host is wrong at the source."""
    made = created(s)
    by = {probe_key(res): res for res in results(s)}
    listed = {d["domain"] for d in reader(s)["domains"]}
    want = {0xFFFFFFFFFFFFFFFE: (-3, "forged_errno"), 0xFFFFFFFFFFFFFFEB: (-22, "forged_errno"),
            0x8000000000000001: (-(1 << 63), "out_of_range")}
    seen, forged_domids = [], set()
    for d in made["domains"]:
        if d.get("max_pfn") not in want:
            continue
        value, verdict = want[d["max_pfn"]]
        res = by[("maximum_gpfn", d["domid"])]
        assert d["domid"] in listed
        assert res["raw"]["value"] == value and res["raw_verdict"] == verdict, res
        assert res["guest_set"] and "the guest's doing" in res["source_note"], res
        assert "not the hypervisor's fault" in res["source_note"], res
        for layer in READER_PATH:
            got = res["layers"][layer]
            if verdict == "forged_errno":
                assert (got["value"], got["errno"], got["verdict"]) == (
                    -1, -value, "passed_forged"), (layer, res)
            else:
                assert got["verdict"] != "match", (layer, res)  # the int paths drop it
        forged_domids.add(d["domid"])
        seen.append(f"dom{d['domid']} max_pfn {d['max_pfn']:#x}: raw {value} "
                    f"{res['raw_verdict']}, " + ", ".join(
                        f"{layer} {res['layers'][layer]['value']}/"
                        f"{res['layers'][layer]['errno']} {res['layers'][layer]['verdict']}"
                        for layer in READER_PATH))
    assert len(forged_domids) == 3, made
    # Nothing else is wrong at the source: not the missing domain's real ESRCH, not the
    # other domains, not the host.
    others = [r for r in all_results(s) if r["domid"] not in forged_domids and at_source(r)]
    assert not others, others
    missing = [r for r in results(s) if r["subject"] == "missing"]
    assert [r["raw_verdict"] for r in missing] == ["match"]
    assert s.check is not None
    counted = sum((r["raw_verdict"] in SOURCE_FINDINGS) + sum(
        v["verdict"] in SOURCE_FINDINGS for v in r["layers"].values())
        for r in all_results(s) if r["domid"] in forged_domids)
    assert s.check["summary"]["source_findings"] == counted >= 3 + 2 * len(READER_PATH)
    assert s.check["exit_code"] == 1
    print(f"Xen {s.release}:", *seen, sep="\n  ")


def created(s: Session) -> dict[str, Any]:
    """mkdomains.py's output, or a skip if no domain was attempted (4.17 without
    Debian's libxenctrl), or a failure if the attempt failed."""
    if s.domains_backend is None:
        pytest.skip(s.no_domains_reason or "no extra domains")
    step = s.steps.get("mkdomains")
    if s.created is None or step is None or step.rc != 0 or "error" in s.created:
        raise fail(s, f"creating domains through {s.domains_backend} failed: "
                      f"step {step}, {s.created}")
    return s.created


def test_extra_domains_are_probed_and_agree(s: Session, realxen: RealXen) -> None:
    """Domains created by mkdomains.py: listed, probed, and as requested."""
    made_by = created(s)
    assert made_by["backend"] == s.domains_backend == DOMAIN_BACKENDS[realxen.release]
    made = made_by["domains"]
    assert len(made) >= 2
    by = {probe_key(res): res for res in results(s)}
    listed = {d["domain"]: d for d in reader(s)["domains"]}
    for d in made:
        domid = d["domid"]
        assert domid in listed, (d, sorted(listed))
        cur = by[("current_reservation", domid)]
        mx = by[("maximum_reservation", domid)]
        gpfn = by[("maximum_gpfn", domid)]
        assert cur["raw"]["value"] == d["tot_pages"] == listed[domid]["tot_pages"]
        assert mx["raw"]["value"] == d["max_pages"] == listed[domid]["max_pages"]
        # (arch_get_max_pfn(d) ?: 1) - 1 (xen/arch/x86/mm.c, domain_get_maximum_gpfn):
        # shared_info's max_pfn as mkdomains.py wrote it, or 0 where nothing wrote it.
        assert gpfn["raw"]["value"] % 2**64 == ((d.get("max_pfn") or 1) - 1) % 2**64, \
            (d, gpfn)
        # max_pfn is what the guest writes itself, and so is its page count (ballooning):
        # values it sets (quantities.GUEST_SET), marked so; its limit is the toolstack's.
        assert gpfn["guest_set"] is cur["guest_set"] is True
        assert mx["guest_set"] is False
        assert cur["raw_verdict"] == mx["raw_verdict"] == "match"
        # The config Xen copied back: PV, with the flag it adds to every PV domain.
        assert d["config_flags"] == XEN_DOMCTL_CDF_OOS_OFF, d
        assert listed[domid]["flags"] & XEN_DOMINF_PAUSED, listed[domid]
    assert by[("maximum_gpfn", 0)]["guest_set"] is False  # dom0's own kernel's
    assert len({d["domid"] for d in made}) == len(made)
    assert s.check is not None and s.check["domains"] == 1 + len(made) == len(listed)


def test_values_at_and_above_2_31_are_flagged_on_real_xen(s: Session) -> None:
    """The created domains' maximum_reservation at 2^31 + 12345 and 2^32 - 1 pages."""
    made = created(s)
    by = {probe_key(res): res for res in results(s)}
    big = [d for d in made["domains"] if d["max_pages"] > (1 << 31) - 1]
    assert big, made
    seen = []
    for d in big:
        res = by[("maximum_reservation", d["domid"])]
        assert res["raw"]["value"] == d["max_pages"] < U32
        assert res["raw_verdict"] == "match"
        want = int_path_verdict(d["max_pages"])
        for layer in READER_PATH:
            assert res["layers"][layer]["verdict"] == want, (layer, res)
        seen.append(f"domain {d['domid']} max_pages {d['max_pages']:#x}: "
                    + ", ".join(f"{layer} {res['layers'][layer]}" for layer in READER_PATH))
    print(f"Xen {s.release} ({made['backend']}):", *seen, sep="\n  ")


def test_serve_metrics_over_loopback(s: Session) -> None:
    """`xenprobe serve` in dom0 for a few sweeps; /metrics fetched with urllib."""
    why = serve_ready(s.serve_help)
    if why is not None:
        pytest.skip(f"turns on when `xenprobe serve` exists: {why}")
    if s.serve is None or not s.serve.get("ok"):
        raise fail(s, f"serve did not give {SERVE_SWEEPS} sweeps: {s.serve}")
    assert s.serve["status"] == 200
    assert s.serve["content_type"].startswith("text/plain")
    assert s.metrics and s.check is not None
    m = parse_metrics(s.metrics)
    one = {n: v for n, labels, v in m if not labels}
    assert one["xenprobe_sweeps_total"] >= SERVE_SWEEPS
    assert one["xenprobe_up"] == 1
    assert one["xenprobe_domains"] == s.check["domains"]
    host = s.check["host"]
    # One spelling for one value: the interface versions in decimal, as in the JSON.
    assert samples(m, "xenprobe_xen_info") == {(
        ("domctl_interface", str(host["domctl_interface"])), ("release", host["release"]),
        ("sysctl_interface", str(host["sysctl_interface"])), ("version", host["version"]),
    ): 1.0}
    # The serve sweeps see the same host as the check run (nothing changed in between).
    per_quantity = Counter(res["quantity"] for res in all_results(s))
    assert samples(m, "xenprobe_probes") == {
        (("quantity", q),): float(n) for q, n in per_quantity.items()}
    expected: Counter[tuple[str, str, str]] = Counter()
    for res in all_results(s):
        for layer, verdict in mismatches(res).items():
            expected[(res["quantity"], layer, verdict)] += 1
    assert {k: n for k, n in samples(m, "xenprobe_mismatch_verdicts").items() if n} == {
        (("layer", layer), ("quantity", q), ("verdict", v)): float(n)
        for (q, layer, v), n in expected.items()}
    # The guests' forged errnos and out-of-range value (session.FORGED_MAX_PFN).
    found: Counter[tuple[str, str, str]] = Counter()
    for res in all_results(s):
        for layer, verdict in source_findings(res).items():
            found[(res["quantity"], layer, verdict)] += 1
    assert found[("maximum_gpfn", "raw", "forged_errno")] == 2, found
    # Summed over the impact label (xenprobe/probe/impact.py decides it per quantity).
    exported: Counter[tuple[tuple[str, str], ...]] = Counter()
    for k, n in samples(m, "xenprobe_source_finding").items():
        exported[tuple(kv for kv in k if kv[0] != "impact")] += int(n)
    assert {k: float(n) for k, n in exported.items() if n} == {
        (("layer", layer), ("quantity", q), ("verdict", v)): float(n)
        for (q, layer, v), n in found.items()}


# How each release's libxenctrl issues memory ops (xenprobe.xen.memop_path, read from the
# loaded file): Debian 11's 4.14.6 through the int ioctl (tools/libxc/xc_private.c
# @RELEASE-4.14.6:331-348), 4.17 and 4.20 through a one-entry multicall
# (tools/libs/ctrl/xc_private.c@RELEASE-4.15.1:340-380 and later).
LIBXC_MEMOP_PATH = {"4.14": "ioctl", "4.17": "multicall", "4.20": "multicall"}
# libxc functions that read through memory_op (the others: xc_version, and
# xc_get_tot_pages through domctl getdomaininfo).
MEMORY_OP = ("maximum_ram_page", "maximum_gpfn")
CENSUS_QUANTITIES = {q.value for q in CENSUS}


def test_libxc_layer_on_real_xen(s: Session, realxen: RealXen) -> None:
    """Debian's libxenctrl of the running release inside the real dom0, behind the
    native guard. Where it issues memory ops through the int ioctl (4.14) its readings
    are the ioctl's, bit for bit, so it loses what the ioctl loses on every value at or
    above 2^31; where it uses a multicall (4.17, 4.20) it keeps every bit."""
    assert s.check is not None
    release = realxen.release
    int_path = LIBXC_MEMOP_PATH[release] == "ioctl"
    notes = [n for n in s.check["notes"] if n.startswith("libxc:")]
    if int_path:
        assert len(notes) == 1 and "through the int ioctl" in notes[0], notes
    else:
        assert notes == [], notes
    rows, lost = [], Counter()
    for res in results(s):
        lx, io = res["layers"]["libxc"], res["layers"]["ioctl"]
        q, raw = res["quantity"], res["raw"]["value"]
        if q in CENSUS_QUANTITIES:
            # libxc has a function for six census quantities only (docs/census.md):
            # xc_version's page size, xc_memory_op's sharing counts from 4.17,
            # xc_kexec_status for both image types, and xc_resource_op's nr_done.
            offered = q in ("xen_pagesize", "resource_op_done") or (
                q.startswith("sharing_") and release != "4.14") or q.startswith("kexec_status_")
            assert (lx["verdict"] != "absent") is offered, res
            if not offered:
                continue
        if lx["verdict"] == "absent":
            # 4.14 exports no xc_memory_op (from 4.17), so nothing reads the
            # reservations through memory_op; xc_get_tot_pages cannot name DOMID_SELF.
            assert release == "4.14" and (
                q == "maximum_reservation" or res["subject"] == "self"), res
            continue
        if int_path and q in MEMORY_OP:
            assert (lx["value"], lx["errno"], lx["verdict"]) == (
                io["value"], io["errno"], io["verdict"]), res
        elif res["raw_verdict"] == "forged_errno":
            assert lx["verdict"] == "passed_forged", res  # -1 and the forged errno
        elif res["raw_verdict"] != "out_of_range":  # test_guest_forged_max_pfn_...
            assert lx["verdict"] == "match", res
        if at_source(res):
            rows.append(f"{release} | {q} | {res['subject']} {res['domid']} | {raw:#x} | "
                        f"{lx['value']} errno {lx['errno']} | {lx['verdict']} "
                        f"(raw {res['raw_verdict']})")
            continue
        if lx["verdict"] != "match":
            lost[(q, lx["verdict"])] += 1
        if raw_failed(raw) or raw > (1 << 31) - 1 or lx["verdict"] != "match":
            rows.append(f"{release} | {q} | {res['subject']} {res['domid']} | {raw:#x} | "
                        f"{lx['value']} errno {lx['errno']} | {lx['verdict']}")
    if int_path:
        # The domains' maximum_gpfn at 2^31 + 12345, 0xFFFFFFFE and 2^32 + 4096.
        assert {v for (q, v) in lost if q == "maximum_gpfn"} == {
            "sign_flipped", "aliased_errno", "truncated"}, lost
    else:
        assert not lost, lost
    print(f"Xen {release}: libxenctrl memory ops via {LIBXC_MEMOP_PATH[release]}",
          *rows, sep="\n  ")


def test_livepatch_list_on_real_xen(s: Session) -> None:
    """Census R7: Debian's hypervisors have CONFIG_LIVEPATCH (default y on x86), so
    LIST answers; with nothing uploaded since boot its version is still 1 and nr (the
    payloads left: all) 0 (common/livepatch.c@RELEASE-4.17.0:49,1245-1246). Asking for
    no entries, rc is 0 entries copied on every path, which the agent reports as a
    match against that reference, with no raw reading; Debian's libxenctrl (4.14+)
    makes the same request in xc_livepatch_list_get_sizes and returns 0 too."""
    lp = reader(s).get("livepatch")
    assert lp == {"ret": 0, "errno": 0, "nr": 0, "version": 1}, lp
    (res,) = [r for r in all_results(s) if r["quantity"] == "livepatch_listed"]
    assert (res["subject"], res["raw"], res["raw_verdict"]) == ("host", None, "absent"), res
    assert res["reference"] == {"lo": 0, "hi": 0}, res
    p = reader_probes(reader(s))[("livepatch_listed", None)]
    assert p["multicall"] is None
    for layer in READER_PATH:
        got = res["layers"][layer]
        assert (got["value"], got["errno"], got["verdict"]) == (0, 0, "match"), res
        assert reader_layer(p, layer) == (0, 0), p
    got = res["layers"]["libxc"]
    assert (got["value"], got["errno"], got["verdict"]) == (0, 0, "match"), res


def test_dr6_comes_back_sign_flipped_on_every_pv_dom0(s: Session) -> None:
    """get_debugreg(6) on a PV dom0: DR6 at rest is 0xFFFF0FF0, which the multicall
    carries whole and privcmd's int turns into -61456: outside glibc's errno window, so
    a plain negative number. Reported as sign_flipped on both int paths; the reader's
    own re-read confirms it. Harmless for DR6 (its upper 32 bits are reserved as zero, so
    the int keeps every bit), but the int path is not a memory problem only."""
    (dr6,) = [r for r in results(s) if r["quantity"] == "debug_register_6"]
    assert dr6["raw"]["value"] == X86_DR6_DEFAULT, dr6
    assert dr6["raw_verdict"] == "match", dr6  # within the DR6 values a vCPU can hold
    for layer in ("ioctl", "syscall"):
        got = dr6["layers"][layer]
        assert (got["value"], got["errno"], got["verdict"]) == (-61456, 0, "sign_flipped")
    p = reader_probes(reader(s))[("debug_register_6", None)]
    assert p["multicall"] == p["multicall_after"] == X86_DR6_DEFAULT
    assert p["ioctl"] == p["syscall"] == {"ret": -61456, "errno": 0}
    assert s.check is not None and s.check["exit_code"] == 1


def test_platform_op_census_quantities_by_release(s: Session, realxen: RealXen) -> None:
    """XENPF_resource_op's nr_done on every release, XENPF_get_dom0_console's size from
    4.18 (before, platform_op's default case answers -ENOSYS: the quantity is absent)."""
    got = {r["quantity"]: r for r in results(s)}
    assert got["resource_op_done"]["raw"]["value"] == 1, got.get("resource_op_done")
    assert ("dom0_console_size" in got) is (realxen.release == "4.20"), sorted(got)
    for q in ("resource_op_done", "dom0_console_size"):
        if q in got:
            assert got[q]["raw_verdict"] == "match", got[q]
            assert {v["verdict"] for k, v in got[q]["layers"].items()
                    if k != "libxc"} == {"match"}, got[q]
