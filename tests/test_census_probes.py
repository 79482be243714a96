# SPDX-License-Identifier: GPL-2.0-only
"""The census quantities on the mock host: probed where the hypervisor answers them,
absent (not planned, not an error) where it answers -ENOSYS, and DR6's resting value
judged as what it is: an unsigned register read back as a negative int."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mockhost import check_json, env_for, read_log
from xenprobe.mock.scenario import parse
from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.quantities import CENSUS

PV_DOM0 = (Path(__file__).resolve().parents[1] / "xenprobe" / "mock" / "scenarios"
           / "pv-dom0.toml").read_text()
CENSUS_NAMES = {q.value for q in CENSUS}


def by_quantity(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["quantity"]: r for r in report["results"] if r["quantity"] in CENSUS_NAMES}


def scenario_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    parse(text, str(path), name)  # valid, or the test is wrong
    return path


def test_dr6_resting_value_is_sign_flipped_by_the_int_path() -> None:
    code, report = check_json("pv-dom0")
    dr6 = by_quantity(report)["debug_register_6"]
    # The hypervisor's unsigned long, zero-extended into the multicall entry's result.
    assert dr6["raw"]["value"] == co.X86_DR6_DEFAULT == 4294905840
    # Against the architecture's reference: every DR6 value a vCPU can hold.
    assert dr6["raw_verdict"] == "match"
    for layer in ("ioctl", "syscall"):
        got = dr6["layers"][layer]
        # privcmd's int: -61456, outside glibc's errno window, so no errno either.
        assert (got["value"], got["errno"], got["verdict"]) == (-61456, 0, "sign_flipped")
    assert dr6["layers"]["libxc"]["verdict"] == "absent"  # libxenctrl has no call for it
    # DR6 is the only mismatch this healthy PV dom0 has, and a harmless one: only the
    # dom0 kernel reads DR6 (xenprobe/probe/impact.py), so the check exits 0.
    assert code == 0
    assert {(r["quantity"], layer) for r in report["results"]
            for layer, v in r["layers"].items() if v["verdict"] not in ("match", "absent")
            } == {("debug_register_6", "ioctl"), ("debug_register_6", "syscall")}


def test_every_census_quantity_of_a_420_pv_dom0_is_probed_and_agrees() -> None:
    _, report = check_json("pv-dom0")
    got = by_quantity(report)
    assert set(got) == CENSUS_NAMES
    expected = {"xen_pagesize": 4096, "build_id_size": 20, "extraversion_len": len(".1"),
                "changeset_len": len("xenprobe-mock"), "commandline_len": 0,
                "sharing_freed_pages": 0, "sharing_shared_pages": 0, "hypfs_version": 1,
                "dom0_console_size": 40, "resource_op_done": 1}
    for name, value in expected.items():
        assert got[name]["raw"]["value"] == value, name
        assert got[name]["layers"]["ioctl"]["verdict"] == "match", name
    # References where the kernel publishes one (sysfs, the page size), none elsewhere.
    assert got["xen_pagesize"]["raw_verdict"] == "match"
    assert got["capabilities_len"]["raw_verdict"] == "match"
    assert got["changeset_len"]["raw_verdict"] == "match"
    assert got["hypfs_version"]["raw_verdict"] is None
    # sizeof(dom0_vga_console_info) from the ABI's layout; the entries asked.
    assert got["dom0_console_size"]["raw_verdict"] == "match"
    assert got["resource_op_done"]["raw_verdict"] == "match"


def test_calls_a_host_does_not_answer_are_absent_not_errors(tmp_path: Path) -> None:
    """A PVH dom0 on 4.17: no get_debugreg and no kexec_op (PV table only), no *2 subops
    (4.20+), no get_dom0_console (4.18+); VCPUOP_is_up and platform_op's resource_op are
    in the HVM table too (include/hypercall-defs.c@4.17:231)."""
    text = PV_DOM0.replace('release = "4.20"', 'release = "4.17"').replace(
        "id = 0\nmemory", "id = 0\nhvm = true\nmemory")
    path = scenario_file(tmp_path, "pvh-417", text)
    code, report = check_json(str(path))
    assert set(by_quantity(report)) == {"xen_pagesize", "build_id_size",
                                        "sharing_freed_pages", "sharing_shared_pages",
                                        "hypfs_version", "vcpu_is_up",
                                        "resource_op_done"}
    assert code == 0 and report["summary"]["mismatches"] == 0


def test_hypfs_arrives_in_414(tmp_path: Path) -> None:
    text = PV_DOM0.replace('release = "4.20"', 'release = "4.13"')
    path = scenario_file(tmp_path, "pv-413", text)
    _, report = check_json(str(path))
    assert "hypfs_version" not in by_quantity(report)
    assert "dom0_console_size" not in by_quantity(report)  # 4.18+
    assert "debug_register_6" in by_quantity(report)
    assert "resource_op_done" in by_quantity(report)  # every release


def test_a_scenario_without_the_census_model_keeps_its_report() -> None:
    """Only the page size, which every mock host answers, joins the report."""
    code, report = check_json("healthy")
    assert set(by_quantity(report)) == {"xen_pagesize"}
    assert code == 0


def test_census_reads_are_one_entry_multicalls_and_plain_ioctls(tmp_path: Path) -> None:
    """The raw reading of each by-value census call is a multicall entry; the ioctl and
    syscall layers issue it alone. Nothing but allow-listed pairs reaches the device."""
    log = tmp_path / "log.jsonl"
    env = env_for(parse(PV_DOM0, "pv-dom0.toml", "pv-dom0"), tmp_path, log)
    check_json("pv-dom0", env=env)
    entries = read_log(log)
    pairs = {(e["op"], e["subop"], e.get("via")) for e in entries
             if e["kind"] in ("hypercall", "multicall_entry") and e["op"] != 13}
    for op, sub in ((9, 6), (42, 0), (12, 18), (12, 19), (17, 7), (17, 10), (17, 14),
                    (24, 3), (37, 6), (7, 61), (7, 64)):
        assert (op, sub, "multicall") in pairs, (op, sub)
        assert (op, sub, "ioctl") in pairs, (op, sub)
        assert (op, sub, "syscall") in pairs, (op, sub)


def test_capabilities_keep_the_trailing_blank_real_xen_has(tmp_path: Path) -> None:
    """Xen builds the string as "xen-3.0-x86_64 hvm-3.0-... " (arch/x86/setup.c@4.20:
    2174-2183): its length counts the trailing blank, and so does the mock's."""
    caps = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64 "
    text = PV_DOM0.replace('extraversion = ".1"',
                           f'extraversion = ".1"\ncapabilities = "{caps}"')
    path = scenario_file(tmp_path, "caps", text)
    _, report = check_json(str(path))
    got = by_quantity(report)["capabilities_len"]
    assert got["raw"]["value"] == len(caps) == 61
    assert got["raw_verdict"] == "match"  # the kernel's sysfs copy, blank included


def test_a_platform_op_xsm_denies_is_absent_not_a_mismatch(tmp_path: Path) -> None:
    """A FLASK policy may deny platform_op commands (xsm_platform_op): -EPERM means the
    quantity is not offered to this dom0, as -ENOSYS does, not a finding."""
    text = PV_DOM0 + "\n[[fault]]\nop = \"platform_op\"\nerrno = \"EPERM\"\ncount = -1\n"
    path = scenario_file(tmp_path, "pf-eperm", text)
    code, report = check_json(str(path))
    got = by_quantity(report)
    assert "dom0_console_size" not in got and "resource_op_done" not in got
    assert "xen_pagesize" in got
    # DR6 alone, as ever: shown, and harmless (xenprobe/probe/impact.py), so exit 0.
    assert code == 0 and report["summary"]["mismatches"] == 2
