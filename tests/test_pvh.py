# SPDX-License-Identifier: GPL-2.0-only
"""A PVH dom0 before Xen 4.15.1 has no multicall (x86/hvm/hypercall.c@RELEASE-4.14.6:
127-157,220-224: no entry in hvm_hypercall_table, so -ENOSYS), hence no raw layer.
`check` still reads every other layer, judges it against the independent reference
where there is one, leaves the rest unjudged, and says so in every output."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from tests.mockhost import check_json, run_check, variant
from tests.test_prometheus import promtool
from xenprobe.layers.raw_absent import MULTICALL_ENOSYS, PVH_NO_MULTICALL, RawAbsent
from xenprobe.mock.scenario import load
from xenprobe.probe.classify import Truth, Verdict
from xenprobe.probe.judge import RAW, RefSample, judge_by_reference
from xenprobe.xen.quantities import UNBATCHED
from xenprobe.xen.reading import Reading

SCENARIO = "pvh-dom0"


def _result(report: dict[str, Any], quantity: str, domid: int | None) -> dict[str, Any]:
    return next(r for r in report["results"]
                if r["quantity"] == quantity and r["domid"] == domid
                and r["subject"] in ("domain", "host"))


def test_scenario_is_a_pvh_dom0_without_multicall() -> None:
    s = load(SCENARIO)
    assert s.guest_type == "PVH"
    assert (s.release.major, s.release.minor) == (4, 14)
    assert not s.multicall


def test_check_runs_without_the_raw_layer() -> None:
    code, report = check_json(SCENARIO)
    assert report["raw_layer"]["present"] is False
    assert report["raw_layer"]["reason"] == "pvh_no_multicall"
    assert report["raw_layer"]["guest_type"] == "PVH"
    assert any(n.startswith("raw: ") and "4.15.1" in n for n in report["notes"])
    for r in report["results"]:
        assert r["raw"] is None and r["raw_verdict"] == "absent"
        assert r["bits"] is None and r["at_risk"] == []
    # The other layers were read all the same.
    assert all(r["layers"]["ioctl"]["verdict"] != "absent" for r in report["results"])
    assert code == report["exit_code"]


def test_layers_are_judged_against_an_exact_reference() -> None:
    code, report = check_json(SCENARIO)
    s = load(SCENARIO)
    dom0 = next(d for d in s.domains if d.domid == 0)
    # dom0 booted without max: (0xFFFFFFFF): getdomaininfo says so, the int paths say
    # -1/EPERM. Found without the raw layer, against the reference.
    r = _result(report, "maximum_reservation", 0)
    assert r["reference"] == {"lo": dom0.max_pages, "hi": dom0.max_pages}
    assert r["layers"]["ioctl"]["verdict"] == "aliased_errno"
    cur = _result(report, "current_reservation", 0)
    assert cur["layers"]["ioctl"]["verdict"] == "match"
    assert code == 0  # harmless: no tool issues maximum_reservation (xenprobe/probe/impact.py)


def test_no_reference_means_unjudged_not_clean_nor_mismatch() -> None:
    _, report = check_json(SCENARIO)
    s = load(SCENARIO)
    big = next(d for d in s.domains if d.max_gpfn >= 1 << 32)
    r = _result(report, "maximum_gpfn", big.domid)
    assert r["reference"] is None
    assert r["layers"]["ioctl"]["value"] == big.max_gpfn % (1 << 32)  # it did lose bits
    assert r["layers"]["ioctl"]["verdict"] == "unjudged"
    assert r["layers"]["syscall"]["verdict"] == "unjudged"
    assert report["summary"]["verdicts"]["unjudged"] > 0


def test_a_range_reference_judges_only_what_falls_outside_it() -> None:
    # maximum_ram_page's reference is [total_pages, 2^52): a reading inside it could
    # still be a truncated one, so it is unjudged; none here falls outside.
    _, report = check_json(SCENARIO)
    r = _result(report, "maximum_ram_page", None)
    assert r["reference"]["lo"] < r["reference"]["hi"]
    assert r["layers"]["syscall"]["verdict"] == "unjudged"


def test_clean_host_without_raw_says_what_was_not_judged(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "pvh-tuned", SCENARIO, "")
    text = path.read_text().replace("max_pages = 0xFFFFFFFF", 'max_memory = "4 GiB"')
    path.write_text(text)
    p = run_check(["check", "--mock", str(path), "--color", "never"], env=None)
    assert p.returncode == 0, p.stderr
    assert "All layers agree" not in p.stdout
    assert "unjudged" in p.stdout and "no raw layer" in p.stdout
    assert "note: raw: " in p.stdout


def test_textfile_says_the_raw_layer_is_absent(tmp_path: Path) -> None:
    prom = tmp_path / "x.prom"
    p = run_check(["check", "--mock", SCENARIO, "--textfile", str(prom)])
    assert p.returncode in (0, 1), p.stderr
    text = prom.read_text()
    assert 'xenprobe_layer_absent{layer="raw",reason="pvh_no_multicall"} 1.0' in text
    assert 'xenprobe_unjudged{' in text


def test_pvh_dom0_from_4_15_1_keeps_the_raw_layer(tmp_path: Path) -> None:
    path, _ = variant(tmp_path, "pvh-417", SCENARIO, "")
    text = path.read_text().replace('release = "4.14"', 'release = "4.17"')
    text = text.replace('extraversion = ".6"', 'extraversion = ".7"')
    path.write_text(text)
    assert load(str(path)).multicall
    _, report = check_json(str(path))
    assert report["raw_layer"]["present"] is True
    # Every probe but the unbatched ones (a sysctl never goes in xenprobe's multicalls).
    unbatched = {q.value for q in UNBATCHED}
    assert all(r["raw"] is not None for r in report["results"]
               if r["quantity"] not in unbatched)
    assert any(r["quantity"] in unbatched for r in report["results"])
    assert "unjudged" not in report["summary"]["verdicts"]


def test_pvh_4_15_0_has_no_multicall_and_4_15_1_has(tmp_path: Path) -> None:
    for extra, has in ((".0", False), (".1", True)):
        path, _ = variant(tmp_path, f"pvh-415{extra}", SCENARIO, "")
        text = path.read_text().replace('release = "4.14"', 'release = "4.15"')
        path.write_text(text.replace('extraversion = ".6"', f'extraversion = "{extra}"'))
        assert load(str(path)).multicall is has
        _, report = check_json(str(path))
        assert report["raw_layer"]["present"] is has


def test_promtool_finds_nothing_to_lint_without_the_raw_layer(tmp_path: Path) -> None:
    prom = tmp_path / "xenprobe.prom"
    assert run_check(["check", "--mock", SCENARIO, "--textfile", str(prom)]).returncode == 0
    p = promtool("check", "metrics", stdin=prom.read_bytes())
    assert p.returncode == 0 and p.stdout + p.stderr == b"", p.stdout + p.stderr
    # No raw value, so no bit length is claimed.
    assert not [line for line in prom.read_text().splitlines()
                if line.startswith("xenprobe_raw_bit_length{")]


# -- the pure parts -----------------------------------------------------------------

def _by_ref(before: Truth | None, after: Truth | None, r: Reading | None
            ) -> dict[str, Verdict]:
    verdicts = judge_by_reference(RefSample(before, after, {"ioctl": r}), final=True)
    assert verdicts is not None
    return verdicts


def test_judge_by_reference_exact() -> None:
    ref = Truth.exact(0xFFFFFFFF)
    assert _by_ref(ref, ref, Reading(-1, errno.EPERM, 32)) == {
        RAW: Verdict.ABSENT, "ioctl": Verdict.ALIASED_ERRNO}
    assert _by_ref(ref, ref, Reading(0xFFFFFFFF, 0, 64)) == {
        RAW: Verdict.ABSENT, "ioctl": Verdict.MATCH}
    ok = Truth.exact(5)
    assert _by_ref(ok, ok, None) == {RAW: Verdict.ABSENT, "ioctl": Verdict.ABSENT}
    esrch = Truth.error(errno.ESRCH)
    assert _by_ref(esrch, esrch, Reading(-1, errno.ESRCH, 32))["ioctl"] is Verdict.MATCH


def test_judge_by_reference_range_and_none() -> None:
    ram = Truth.between(1000, 1 << 52)
    # Inside: could be right, could be 2^32 + 2000 cut to 32 bits.
    assert _by_ref(ram, ram, Reading(2000, 0, 32))["ioctl"] is Verdict.UNJUDGED
    # Outside: wrong whatever the value was.
    assert _by_ref(ram, ram, Reading(5, 0, 32))["ioctl"].is_mismatch
    assert _by_ref(None, None, Reading(4096, 0, 32))["ioctl"] is Verdict.UNJUDGED


def test_judge_by_reference_waits_for_a_moving_reference() -> None:
    a, b = Truth.exact(100), Truth.exact(200)
    assert judge_by_reference(RefSample(a, b, {"ioctl": Reading(150, 0, 32)}),
                              final=False) is None
    assert _by_ref(a, b, Reading(150, 0, 32))["ioctl"] is Verdict.DRIFT


def test_reason_follows_the_guest_type() -> None:
    assert RawAbsent.after_enosys("PVH").reason == PVH_NO_MULTICALL
    assert RawAbsent.after_enosys("PV").reason == MULTICALL_ENOSYS
    assert RawAbsent.after_enosys(None).reason == MULTICALL_ENOSYS
    assert "4.15.1" in RawAbsent.after_enosys("PVH").note
