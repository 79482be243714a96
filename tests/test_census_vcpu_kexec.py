# SPDX-License-Identifier: GPL-2.0-only
"""Census rows R4 (VCPUOP_is_up, per vCPU of dom0) and R8 (KEXEC_CMD_kexec_status, per
image type) on the mock host: planned for each of dom0's own vCPUs and each type, judged
against the dom0 kernel's CPU lists only where they are a reference (a PV dom0), and
absent where the hypercall is not in the dom0's table (kexec_op on PVH)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mockhost import check_json, env_for
from tests.realxen.compare import diff_reports, reader_probes, scenario_from_readings
from xenprobe.mock.scenario import load, parse
from xenprobe.probe.classify import Truth
from xenprobe.probe.references import Facts, cpu_list, vcpu_reference

PV_DOM0 = (Path(__file__).resolve().parents[1] / "xenprobe" / "mock" / "scenarios"
           / "pv-dom0.toml").read_text()
READER = Path(__file__).resolve().parent / "realxen" / "reader.py"
KEXEC = ("kexec_status_default", "kexec_status_crash")


def variant(tmp_path: Path, name: str, *, release: str = "4.20", pvh: bool = False,
            offline: str = "", kexec: str = "") -> Path:
    """pv-dom0 (4 vCPUs) with dom0 PVH, some of its vCPUs offline in its kernel, or
    kexec images loaded."""
    text = PV_DOM0.replace('release = "4.20"', f'release = "{release}"')
    dom0 = "id = 0\n" + ("hvm = true\n" if pvh else "") + (
        f"offline_vcpus = [{offline}]\n" if offline else "")
    text = text.replace("id = 0\n", dom0, 1)
    if kexec:
        text = text.replace("census = true", f"census = true\nkexec_loaded = [{kexec}]")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    parse(text, str(path), name)  # valid, or the test is wrong
    return path


def rows(report: dict[str, Any], quantity: str) -> list[dict[str, Any]]:
    return [r for r in report["results"] if r["quantity"] == quantity]


def layer_values(r: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {name: (v["value"], v["errno"], v["verdict"])
            for name, v in r["layers"].items() if name in ("ioctl", "syscall")}


def test_each_dom0_vcpu_is_a_subject_and_agrees_with_linux() -> None:
    code, report = check_json("pv-dom0")
    up = rows(report, "vcpu_is_up")
    # dom0 has 4 vCPUs (getdomaininfo max_vcpu_id 3): vcpu0..vcpu3, nothing beyond.
    assert [(r["subject"], r["vcpu"], r["domid"]) for r in up] == [
        ("vcpu", v, None) for v in range(4)]
    for r in up:
        assert r["raw"]["value"] == 1
        # A PV dom0's online CPU list names every one: exactly 1 each.
        assert r["reference"] == {"lo": 1, "hi": 1}
        assert r["raw_verdict"] == "match"
        assert layer_values(r) == {"ioctl": (1, 0, "match"), "syscall": (1, 0, "match")}
        assert r["layers"]["libxc"]["verdict"] == "absent"  # libxenctrl has no call
    for q in KEXEC:
        (r,) = rows(report, q)
        assert (r["subject"], r["raw"]["value"], r["reference"], r["raw_verdict"]) == (
            "host", 0, None, None)  # no image loaded; nothing in Linux says Xen's
        assert layer_values(r) == {"ioctl": (0, 0, "match"), "syscall": (0, 0, "match")}
    assert code == 0  # DR6's harmless sign flip, nothing else (test_census_probes.py)


def test_a_pv_dom0_offline_vcpu_is_down_in_xen_and_expected_down(tmp_path: Path) -> None:
    code, report = check_json(str(variant(tmp_path, "pv-offline", offline="2")))
    assert code == 0
    up = {r["vcpu"]: r for r in rows(report, "vcpu_is_up")}
    assert up[2]["raw"]["value"] == 0
    assert up[2]["reference"] == {"lo": 0, "hi": 0}
    assert up[2]["raw_verdict"] == "match"
    assert layer_values(up[2]) == {"ioctl": (0, 0, "match"), "syscall": (0, 0, "match")}
    assert [up[v]["raw"]["value"] for v in (0, 1, 3)] == [1, 1, 1]
    assert report["summary"]["mismatches"] == 2  # DR6 on ioctl and syscall only


def test_a_pvh_dom0_offline_vcpu_may_be_up_and_is_no_alarm(tmp_path: Path) -> None:
    """A PVH kernel offlines a CPU without VCPUOP_down: Xen still has the vCPU up, and
    Linux's CPU list is no reference there. kexec_op is not in the HVM table."""
    code, report = check_json(str(variant(tmp_path, "pvh-offline", release="4.17",
                                          pvh=True, offline="2")))
    up = {r["vcpu"]: r for r in rows(report, "vcpu_is_up")}
    assert sorted(up) == [0, 1, 2, 3]
    assert up[2]["raw"]["value"] == 1
    assert all(r["reference"] is None and r["raw_verdict"] is None for r in up.values())
    assert all(q not in {r["quantity"] for r in report["results"]} for q in KEXEC)
    assert code == 0 and report["summary"]["mismatches"] == 0


def test_a_vcpu_going_off_and_on_while_read_is_drift_never_truncation(
        tmp_path: Path) -> None:
    """vCPU 2 changes state (in Xen and in the kernel's CPU list alike) after every
    VCPUOP_is_up read of it: the raw reads before and after the layers differ, the
    sweep looks again, and what stays is drift, never a truncation-class verdict."""
    path = variant(tmp_path, "flapping", offline="")
    text = path.read_text().replace("vcpus = 4\n", "vcpus = 4\nflap_vcpu = [2, 1]\n", 1)
    path.write_text(text)
    parse(text, str(path), "flapping")
    code, report = check_json(str(path))
    up = {r["vcpu"]: r for r in rows(report, "vcpu_is_up")}
    verdicts = {up[2]["raw_verdict"], *(v["verdict"] for v in up[2]["layers"].values())}
    assert "drift" in verdicts and verdicts <= {"match", "drift", "absent", None}, up[2]
    assert up[2]["attempts"] > 1
    for v in (0, 1, 3):
        assert {x["verdict"] for x in up[v]["layers"].values()} == {"match", "absent"}
    assert report["summary"]["mismatches"] == 2  # DR6 only: drift is no mismatch
    assert code == 0


def test_kexec_status_is_each_types_slot_bit(tmp_path: Path) -> None:
    code, report = check_json(str(variant(tmp_path, "kdump", kexec='"crash"')))
    assert code == 0
    got = {q: rows(report, q)[0] for q in KEXEC}
    assert got["kexec_status_crash"]["raw"]["value"] == 1
    assert got["kexec_status_default"]["raw"]["value"] == 0
    assert layer_values(got["kexec_status_crash"]) == {
        "ioctl": (1, 0, "match"), "syscall": (1, 0, "match")}
    assert report["summary"]["mismatches"] == 2  # DR6 only


EDGES = r"""
import json
from xenprobe.support.errors import Refused
from xenprobe.xen.transport import Buffer, Privcmd, args5
out = {}
with Privcmd() as dev, Buffer(8) as status:
    def read(name, op, *args):
        r = dev.ioctl(op, args5(*args))
        out[name] = [r.value, r.errno]
    # vcpu_op(VCPUOP_is_up, vcpuid, NULL): vcpuid past dom0's 4 vCPUs, and (unsigned
    # int) ~0.
    read("vcpu4", 24, 3, 4)
    read("vcpu_max", 24, 3, 0xFFFFFFFF)
    read("vcpu3", 24, 3, 3)
    for t in (0, 1, 2, 255):
        status.view[0:1] = bytes([t])
        read(f"kexec_type{t}", 37, 6, status.address)
    read("kexec_null", 37, 6, 0)
    # The neighbours that change state are refused before the device.
    for name, op, sub in (("vcpu_down", 24, 2), ("vcpu_up", 24, 1), ("kexec_exec", 37, 0),
                          ("kexec_unload", 37, 5)):
        try:
            dev.ioctl(op, args5(sub, 1))
            out[name] = "issued"
        except Refused:
            out[name] = "refused"
print(json.dumps(out))
"""


def test_out_of_range_vcpuid_and_bad_kexec_type(tmp_path: Path) -> None:
    """do_vcpu_op looks the vCPU up first: -ENOENT past the caller's vCPUs
    (arch/x86/domain.c@RELEASE-4.17.0:1505-1506). kexec_status: -EINVAL for a type
    other than default and crash (common/kexec.c@RELEASE-4.17.0:1210-1211), -EFAULT
    for an unreadable struct."""
    env = env_for(load("pv-dom0"), tmp_path)
    p = subprocess.run([sys.executable, "-c", EDGES], env=env, text=True,
                       capture_output=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["vcpu4"] == out["vcpu_max"] == [-1, errno.ENOENT]
    assert out["vcpu3"] == [1, 0]
    assert out["kexec_type0"] == out["kexec_type1"] == [0, 0]
    assert out["kexec_type2"] == out["kexec_type255"] == [-1, errno.EINVAL]
    assert out["kexec_null"] == [-1, errno.EFAULT]
    assert {out[k] for k in ("vcpu_down", "vcpu_up", "kexec_exec", "kexec_unload")} == {
        "refused"}


def test_the_independent_reader_reads_them_and_its_scenario_reproduces_the_report(
        tmp_path: Path) -> None:
    """The real-Xen tier's path, on the mock: the independent reader
    (tests/realxen/reader.py) re-reads every vCPU and kexec probe of a report, and the
    scenario written from its readings (offline vCPUs from the kernel's CPU lists, the
    kexec types whose status reads 1) makes the mock report the same again."""
    path = variant(tmp_path, "offline-kdump", offline="1, 3", kexec='"crash"')
    _, report = check_json(str(path))
    check = tmp_path / "check.json"
    check.write_text(json.dumps(report))
    env = env_for(load(str(path)), tmp_path)
    p = subprocess.run([sys.executable, str(READER), "--probes-from", str(check)], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr + p.stdout
    reader = json.loads(p.stdout)
    seen = reader_probes(reader)
    for r in rows(report, "vcpu_is_up"):
        rp = seen[("vcpu_is_up", r["vcpu"])]
        assert rp["multicall"] == rp["multicall_after"] == r["raw"]["value"]
        assert rp["ioctl"] == {"ret": r["raw"]["value"], "errno": 0}
    assert [seen[("vcpu_is_up", v)]["multicall"] for v in range(4)] == [1, 0, 1, 0]
    assert reader["kexec_status"] == {"kexec_status_default": 0, "kexec_status_crash": 1}
    assert seen[("kexec_status_crash", None)]["syscall"] == {"ret": 1, "errno": 0}

    again = tmp_path / "from-reader.toml"
    again.write_text(scenario_from_readings(reader, description="from the reader"))
    _, mock = check_json(str(again))
    assert diff_reports(report, mock) == []


def test_cpu_lists_and_the_vcpu_reference() -> None:
    assert cpu_list("0-3,5\n") == frozenset({0, 1, 2, 3, 5})
    assert cpu_list("0\n") == frozenset({0})
    assert cpu_list("\n") == frozenset()
    assert cpu_list(None) is None
    assert cpu_list("3-1") is None and cpu_list("x") is None

    def facts(kind: str, possible: str, online: str) -> Facts:
        return Facts(kind, 4096, None, None, None, cpu_list(possible), cpu_list(online))

    pv = facts("PV", "0-3", "0-1,3")
    assert [vcpu_reference(pv, v) for v in range(5)] == [
        Truth.exact(1), Truth.exact(1), Truth.exact(0), Truth.exact(1), None]
    # PVH: an offline CPU may still be up in Xen; no reference at all.
    assert vcpu_reference(facts("PVH", "0-3", "0-1,3"), 0) is None
    # Unreadable lists: no reference.
    assert vcpu_reference(Facts("PV", 4096, None, None, None), 0) is None


def test_the_series_do_not_grow_with_dom0s_vcpus(tmp_path: Path) -> None:
    """vcpu_is_up is one quantity in the metrics, whatever dom0's vCPU count: the
    textfile of a 4-vCPU and a 256-vCPU dom0 has the same series, none naming a vCPU;
    only xenprobe_probes' value says how many were read."""
    series = {}
    for vcpus in (4, 256):
        # The same scenario name: xenprobe_mock_info carries it.
        (tmp_path / str(vcpus)).mkdir()
        path = tmp_path / str(vcpus) / "host.toml"
        path.write_text(PV_DOM0.replace("vcpus = 4", f"vcpus = {vcpus}", 1))
        prom = tmp_path / f"vcpus{vcpus}.prom"
        code, report = check_json(str(path), "--textfile", str(prom))
        assert code == 0
        assert len(rows(report, "vcpu_is_up")) == vcpus
        lines = [ln for ln in prom.read_text().splitlines() if ln.startswith("xenprobe_")]
        series[vcpus] = {ln.rsplit(" ", 1)[0]: ln.rsplit(" ", 1)[1] for ln in lines}
    assert series[4].keys() == series[256].keys()
    assert not any("vcpu=" in s or 'domid="vcpu' in s for s in series[4])
    key = 'xenprobe_probes{quantity="vcpu_is_up"}'
    assert (float(series[4][key]), float(series[256][key])) == (4, 256)


# Runs on the mock host: a sweep, then a fork whose child sweeps with its own Host.
FORKED_SWEEP = r"""
import json, os
from xenprobe.xen.host import Host
from xenprobe.layers.protocol import ladder
from xenprobe.support.logs import configure
from xenprobe.probe.sweep import Sweeper
from xenprobe.xen.transport import Privcmd
configure("warning")

def host_wide():
    dev = Privcmd(); host = Host(dev)
    sweep = Sweeper(host, ladder(dev, host.identity)).sweep()
    return {f"{r.probe.quantity.value} {r.probe.label}":
            [None if r.raw is None else r.raw.value, r.readings["syscall"].value]
            for r in sweep.results if r.probe.domid is None}

print(json.dumps(host_wide()), flush=True)
pid = os.fork()
if pid == 0:
    try:
        print(json.dumps(host_wide()), flush=True)
    finally:
        os._exit(0)
os.waitpid(pid, 0)
"""


def test_a_forked_child_asks_from_its_own_memory(tmp_path: Path) -> None:
    """The census's request structs (kexec status, platform_op, livepatch LIST) live in
    locked hypercall memory, which a child does not inherit (MADV_DONTFORK): a child
    that sweeps must not point Xen at its parent's pages, where it would find other
    bytes or none, and must read every host-wide quantity as its parent did."""
    env = env_for(load("pv-dom0"), tmp_path)
    p = subprocess.run([sys.executable, "-c", FORKED_SWEEP], env=env, text=True,
                       capture_output=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    parent, child = (json.loads(line) for line in p.stdout.splitlines())
    assert parent["kexec_status_default host"] == parent["kexec_status_crash host"] == [0, 0]
    assert parent["resource_op_done host"] == [1, 1]
    assert parent["livepatch_listed host"] == [None, 0]
    assert child == parent, p.stderr
