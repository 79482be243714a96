# SPDX-License-Identifier: GPL-2.0-only
"""Xen's own Python bindings (xen.lowlevel.xc from Debian's xen-utils-4.17) on the mock
host, against xenprobe's raw readings and the scenario.

The bindings decode physinfo and getdomaininfo with libxenctrl 4.17's compiled structs,
xenprobe with its own layout tables: where both run, they must agree. Where libxenctrl
4.17 cannot run (another release's interface version, a domU), the bindings must fail
the way the hypervisor refused, not return something.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import xenpkgs
from tests.mockhost import check_json, env_for
from xenprobe.mock.scenario import Scenario, compile_text, load, shipped
from xenprobe.xen.abi.releases import by_name

LIB = by_name("4.17")
EVERY = [n for n in shipped() if load(n).device == "present"]
PAGE_KIB = 4

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import xen.lowlevel.xc
xc = xen.lowlevel.xc.xc()
out = {}
calls = {"physinfo": xc.physinfo, "domain_getinfo": xc.domain_getinfo,
         "xeninfo": xc.xeninfo,
         "domain_getinfo_from": lambda: xc.domain_getinfo(int(sys.argv[2]), 1)}
for name, call in calls.items():
    try:
        out[name] = call()
    except xen.lowlevel.xc.Error as e:
        out[name] = {"error": list(e.args)}
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def pkgs() -> xenpkgs.XenPackages:
    if os.environ.get(xenpkgs.SKIP_ENV) == "1":
        pytest.skip(f"{xenpkgs.SKIP_ENV}=1: real Xen 4.17 libraries not fetched")
    return xenpkgs.ensure()


@pytest.fixture(scope="module", params=EVERY)
def bindings(request: pytest.FixtureRequest, pkgs: xenpkgs.XenPackages,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, dict[str, Any]]:
    s = load(request.param)
    env = env_for(s, tmp_path_factory.mktemp(s.name))
    env.update(pkgs.env())
    p = subprocess.run([sys.executable, "-c", CHILD, str(pkgs.python_dir),
                        str(_unused_id(s))], env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out: dict[str, Any] = json.loads(p.stdout)
    return s, out


@functools.cache
def _report(name: str) -> dict[str, Any] | None:
    """xenprobe's own sweep of the scenario (None where it cannot probe: a domU)."""
    if load(name).role != "dom0":
        return None
    _, report = check_json(name)
    return report


def _unused_id(s: Scenario) -> int:
    """The lowest domain id nobody uses: below an existing domain where there is a gap."""
    ids = {d.domid for d in s.domains}
    return min(set(range(max(ids) + 2)) - ids)


def _compiled(s: Scenario, directive: str) -> list[list[str]]:
    return [line.split()[1:] for line in compile_text(s).splitlines()
            if line.startswith(directive + " ")]


def _refusal(s: Scenario, interface: int, expected: int) -> int | None:
    """The errno the hypervisor gives libxc 4.17's sysctl/domctl, None if it answers."""
    if interface != expected:
        return errno.EACCES
    if s.role != "dom0":
        return errno.EPERM
    return None


def test_physinfo(bindings: tuple[Scenario, dict[str, Any]]) -> None:
    s, out = bindings
    got = out["physinfo"]
    refused = _refusal(s, s.sysctl_interface, LIB.sysctl)
    if refused is not None:
        assert got == {"error": [refused, os.strerror(refused)]}
        return
    # The mock's physinfo bytes, decoded with xenprobe's layout for the release.
    ((blob,),) = _compiled(s, "physinfo")
    p = s.release.physinfo.decode(bytes.fromhex(blob))
    assert got["total_memory"] == s.total_pages * PAGE_KIB == p["total_pages"] * PAGE_KIB
    assert got["free_memory"] == s.free_pages * PAGE_KIB == p["free_pages"] * PAGE_KIB
    assert got["scrub_memory"] == p["scrub_pages"] * PAGE_KIB
    assert got["nr_cpus"] == s.nr_cpus == p["nr_cpus"]
    assert got["cpu_khz"] == s.cpu_khz == p["cpu_khz"]
    for key in ("nr_nodes", "threads_per_core", "cores_per_socket"):
        assert got[key] == p[key], key
    caps = [name for bit, name in ((1, "hvm"), (2, "pv")) if int(p["capabilities"]) & bit]
    assert got["virt_caps"] == " ".join(caps)
    report = _report(s.name)
    assert report is not None
    (ram,) = [r for r in report["results"] if r["quantity"] == "maximum_ram_page"]
    # xenprobe's reference for max_page starts at the total_pages it decoded itself.
    assert ram["reference"]["lo"] * PAGE_KIB == got["total_memory"]


def test_domain_getinfo(bindings: tuple[Scenario, dict[str, Any]]) -> None:
    s, out = bindings
    got = out["domain_getinfo"]
    refused = _refusal(s, s.domctl_interface, LIB.domctl)
    if refused is not None:
        assert got == {"error": [refused, os.strerror(refused)]}
        return
    assert [d["domid"] for d in got] == [d.domid for d in s.domains]
    report = _report(s.name)
    assert report is not None
    assert report["domains"] == len(got)
    raw = {(r["quantity"], r["domid"]): r["raw"] for r in report["results"]
           if r["subject"] == "domain"}
    for d, info in zip(s.domains, got, strict=True):
        where = f"{s.name} dom{d.domid}"
        assert info["mem_kb"] == d.tot_pages * PAGE_KIB, where
        assert info["maxmem_kb"] == d.max_pages * PAGE_KIB, where
        if not d.balloon:
            assert raw[("current_reservation", d.domid)] == {
                "value": info["mem_kb"] // PAGE_KIB, "errno": 0, "width": 64}, where
        assert raw[("maximum_reservation", d.domid)]["value"] == \
            info["maxmem_kb"] // PAGE_KIB, where
        assert (info["online_vcpus"], info["max_vcpu_id"]) == (d.vcpus, d.vcpus - 1), where
        assert (info["hvm"], info["running"]) == (int(d.hvm), 1), where
        assert bytes(info["handle"]) == uuid.uuid5(
            uuid.NAMESPACE_OID, f"xenprobe-{s.name}-{d.domid}").bytes, where


def test_domain_getinfo_from_a_missing_id(bindings: tuple[Scenario, dict[str, Any]]
                                          ) -> None:
    """xc_domain_getinfo(first, 1) on a <= 4.17 hypervisor lists the next domain at or
    above `first`; with none left, Xen's ESRCH reaches Python as the error."""
    s, out = bindings
    got = out["domain_getinfo_from"]
    refused = _refusal(s, s.domctl_interface, LIB.domctl)
    first = _unused_id(s)
    following = [d.domid for d in s.domains if d.domid > first]
    if refused is None and not following:
        refused = errno.ESRCH
    if refused is not None:
        assert got == {"error": [refused, os.strerror(refused)]}
        return
    assert s.release.getdomaininfo_exact is False  # 4.17: the next-domain semantics
    assert [d["domid"] for d in got] == following[:1]


def test_xeninfo(bindings: tuple[Scenario, dict[str, Any]]) -> None:
    """xen_version carries no interface version: it answers every release."""
    s, out = bindings
    got = out["xeninfo"]
    assert (got["xen_major"], got["xen_minor"]) == (s.release.major, s.release.minor)
    assert got["xen_extra"] == s.extraversion
    assert got["xen_caps"] == s.capabilities
    assert got["xen_pagesize"] == 4096
    report = _report(s.name)
    if report is not None:
        assert report["host"]["version"] == \
            f"{got['xen_major']}.{got['xen_minor']}{got['xen_extra']}"
        (ver,) = [r for r in report["results"] if r["quantity"] == "xen_version"]
        # A host without the raw layer (a PVH dom0 before 4.15.1): the syscall's answer.
        seen = ver["raw"] if ver["raw"] is not None else ver["layers"]["syscall"]
        assert seen["value"] == (got["xen_major"] << 16) | got["xen_minor"]


def test_bindings_ran_somewhere(pkgs: xenpkgs.XenPackages) -> None:
    """Guard against a vacuous run: some shipped scenario lets each call through."""
    runnable = [load(n) for n in EVERY]
    assert any(s.sysctl_interface == LIB.sysctl and s.role == "dom0" for s in runnable)
    assert any(s.domctl_interface == LIB.domctl and s.role == "dom0" for s in runnable)
    assert Path(pkgs.xc_module).is_file()
