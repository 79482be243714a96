# SPDX-License-Identifier: GPL-2.0-only
"""Raw results wrong at the source (issue 24): a forged errno (one the call cannot
return, xen/abi/errnos.py, or ESRCH for a domain that exists) and a value out of range
(negative as a long, no errno) get raw verdicts of their own, and a layer that passes a
forged error on is passed_forged; real errors (a missing domain, an XSM denial, a
domain destroyed mid-sweep) never are. Pure cases first, then the mock host end to end."""

from __future__ import annotations

import errno
import json
import re
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.conversions import glibc_ioctl, glibc_syscall, pvops_kernel
from tests.mockhost import check_json, env_for, run_check
from tests.report_schema import validate
from xenprobe.exporter.metrics import from_sweep as metrics
from xenprobe.mock.scenario import load, parse, shipped
from xenprobe.probe.classify import SOURCE_FINDINGS, Verdict, at_source
from xenprobe.probe.judge import RAW, Sample, judge
from xenprobe.probe.results import Result, Summary
from xenprobe.probe.sweep import Sweep
from xenprobe.xen.quantities import Probe, Quantity, Subject
from xenprobe.xen.reading import Reading, raw_result

U64 = 1 << 64
GPFN_ERRNOS = frozenset({errno.EFAULT, errno.ESRCH, errno.EPERM, errno.EACCES})


# ------------------------------------------------------------------------ pure cases

@pytest.mark.parametrize(("raw", "allowed", "want"), [
    (-3, GPFN_ERRNOS - {errno.ESRCH}, Verdict.FORGED_ERRNO),  # ESRCH, domain exists
    (-3, GPFN_ERRNOS, None),                                  # ESRCH, domain may be gone
    (-22, GPFN_ERRNOS, Verdict.FORGED_ERRNO),                 # no EINVAL path
    (-1, GPFN_ERRNOS, None),                                  # XSM denial
    (-13, GPFN_ERRNOS, None),                                 # FLASK denial
    (-22, None, None),                                        # set unknown: no claim
    (0x8000000000000000, GPFN_ERRNOS, Verdict.OUT_OF_RANGE),
    (0xFFFFFFFFFFFFF000, GPFN_ERRNOS, Verdict.OUT_OF_RANGE),  # -4096: just past errnos
    (0xFFFFFFFFFFFFF001, GPFN_ERRNOS, Verdict.FORGED_ERRNO),  # -4095: an errno
    (0x7FFFFFFFFFFFFFFF, GPFN_ERRNOS, None),                  # LONG_MAX
    (0, frozenset(), None),
])
def test_at_source(raw: int, allowed: frozenset[int] | None, want: Verdict | None) -> None:
    assert at_source(raw_result(raw), allowed) is want
    # The out-of-range class is decided by the 64-bit pattern, however it is written.
    if want is Verdict.OUT_OF_RANGE:
        assert at_source(Reading(raw % U64), allowed) is want


def _sample(raw: int, allowed: frozenset[int] | None) -> Sample:
    kernel = pvops_kernel(raw)
    layers: dict[str, Reading | None] = {"syscall": glibc_syscall(kernel),
                                         "ioctl": glibc_ioctl(kernel), "libxc": None}
    return Sample(raw_result(raw), raw_result(raw), None, None, layers,
                  can_return=allowed)


def test_forged_errno_is_looked_at_again_then_judged() -> None:
    s = _sample(-3, GPFN_ERRNOS - {errno.ESRCH})
    assert judge(s, final=False) is None  # a guest's value: every look must see it
    v = judge(s, final=True, earlier=[s, s])
    assert v == {RAW: Verdict.FORGED_ERRNO, "syscall": Verdict.PASSED_FORGED,
                 "ioctl": Verdict.PASSED_FORGED, "libxc": Verdict.ABSENT}


def test_forged_errno_that_went_away_is_drift() -> None:
    s = _sample(-22, GPFN_ERRNOS)
    v = judge(s, final=True, earlier=[_sample(100, GPFN_ERRNOS)])
    assert v is not None and v[RAW] is Verdict.DRIFT and v["ioctl"] is Verdict.DRIFT


def test_real_errors_stay_plain() -> None:
    """ESRCH where the domain may be missing, an XSM denial: matched, no raw verdict
    (maximum_gpfn has no reference), nothing at the source."""
    for raw in (-errno.ESRCH, -errno.EPERM, -errno.EACCES):
        v = judge(_sample(raw, GPFN_ERRNOS), final=False)
        assert v == {"syscall": Verdict.MATCH, "ioctl": Verdict.MATCH,
                     "libxc": Verdict.ABSENT}, raw


def test_no_answer_is_not_forged() -> None:
    """EINTR / EAGAIN still there after the retries is no answer (judge's rule), never a
    forged errno, though maximum_gpfn cannot return them."""
    for raw in (-errno.EINTR, -errno.EAGAIN):
        s = _sample(raw, GPFN_ERRNOS - {errno.ESRCH})
        v = judge(s, final=True, earlier=[s, s])
        assert v is not None and RAW not in v, (raw, v)
        assert not {x for x in v.values() if x.is_source_finding}, (raw, v)


def test_out_of_range_leaves_the_layers_verdicts() -> None:
    s = _sample(-(1 << 63), GPFN_ERRNOS)
    v = judge(s, final=True, earlier=[s, s])
    assert v is not None
    assert v[RAW] is Verdict.OUT_OF_RANGE
    assert v["syscall"] is Verdict.TRUNCATED and v["ioctl"] is Verdict.TRUNCATED


def test_forged_errors_are_no_layer_errors() -> None:
    """xenprobe_layer_errors_total feeds XenprobeHypervisorErrors: a forged EINVAL is
    not Xen answering EINVAL, and counts there for no layer; a real EPERM does."""
    def result(domid: int, raw: int, verdicts: dict[str, Verdict]) -> Result:
        kernel = pvops_kernel(raw)
        readings: dict[str, Reading | None] = {"syscall": glibc_syscall(kernel),
                                               "ioctl": glibc_ioctl(kernel)}
        return Result(Probe(Quantity.MAXIMUM_GPFN, Subject.DOMAIN, domid), raw_result(raw),
                      None, readings, verdicts, 3)
    forged = result(1, -22, {RAW: Verdict.FORGED_ERRNO, "syscall": Verdict.PASSED_FORGED,
                             "ioctl": Verdict.PASSED_FORGED})
    denied = result(2, -1, {"syscall": Verdict.MATCH, "ioctl": Verdict.MATCH})
    sweep = cast(Sweep, SimpleNamespace(summary=Summary.of([forged, denied])))
    assert metrics.layer_errors(sweep) == {(RAW, "EPERM"): 1, ("syscall", "EPERM"): 1,
                                           ("ioctl", "EPERM"): 1}


# ------------------------------------------------------------------ the mock host

SCENARIO = "pv-guest-max-pfn"


def _at(tmp: Path, release: str, extra: str = "", base: str = SCENARIO
        ) -> tuple[int, dict[str, Any]]:
    """`check --json` on a shipped scenario moved to another release, `extra` appended."""
    text = resources.files("xenprobe.mock.scenarios").joinpath(f"{base}.toml").read_text()
    text, n = re.subn(r'(?m)^release = "4\.\d+"$', f'release = "{release}"', text)
    assert n == 1
    text += extra
    name = f"{base}-{release}"
    p = run_check(["check", "--json", "--mock", name],
                  env=env_for(parse(text, f"{name}.toml", name), tmp))
    assert p.returncode in (0, 1), p.stderr
    report = json_of(p.stdout)
    return p.returncode, report


def json_of(text: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(text)
    validate(report)
    return report


def _gpfn(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {r["domid"]: r for r in report["results"] if r["quantity"] == "maximum_gpfn"}


@pytest.mark.parametrize("release", ["4.14", "4.17", "4.20"])
def test_guest_set_max_pfn_is_judged_at_the_source(tmp_path: Path, release: str) -> None:
    code, report = _at(tmp_path, release)
    got = _gpfn(report)
    assert code == 1 and report["exit_code"] == 1
    assert got[1]["raw"]["value"] == -3 and got[1]["raw_verdict"] == "forged_errno"
    assert got[2]["raw"]["value"] == -22 and got[2]["raw_verdict"] == "forged_errno"
    assert got[3]["raw"]["value"] == -(1 << 63) and got[3]["raw_verdict"] == "out_of_range"
    for d in (1, 2):
        assert {got[d]["layers"][n]["verdict"] for n in ("syscall", "ioctl")} \
            == {"passed_forged"}
    # Out of range: whatever the layers below do with it (here the int paths drop it).
    assert got[3]["layers"]["ioctl"]["verdict"] == "truncated"
    for d in (1, 2, 3):
        note = got[d]["source_note"]
        assert got[d]["guest_set"] and "the guest's doing" in note \
            and "not the hypervisor's fault" in note and "dump-core" in note, note
    # The healthy PV guest and dom0 stay clean.
    for d in (0, 4):
        assert got[d]["raw_verdict"] is None and got[d]["source_note"] is None
        assert {v["verdict"] for v in got[d]["layers"].values()} <= {"match", "absent"}
    assert report["summary"]["source_findings"] == 3 + 4
    missing = [r for r in report["results"] if r["subject"] == "missing"]
    assert [r["raw_verdict"] for r in missing] == ["match"]


def test_the_table_and_metrics_say_so(tmp_path: Path) -> None:
    table = run_check(["check", "--mock", SCENARIO]).stdout
    assert "forged_errno" in table and "passed on a forged error" in table
    assert "3 raw results wrong at the source (forged_errno 2, out_of_range 1), 3 of " \
           "them values the guest sets" in table
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", SCENARIO, "--textfile", str(prom)])
    found = {}
    for line in prom.read_text().splitlines():
        if line.startswith("xenprobe_source_finding{"):
            labels = dict(kv.split("=") for kv in line[line.index("{") + 1:
                                                       line.index("}")].split(","))
            key = tuple(labels[k].strip('"')
                        for k in ("quantity", "layer", "verdict", "impact"))
            found[key] = int(float(line.rsplit(" ", 1)[1]))
    # maximum_gpfn has consumers (HVM save, dump-core: xenprobe.probe.impact), so a forged
    # errno or out-of-range value there is harmful. Only non-zero series, as every
    # detail gauge since the alerts branch (the alert reads `> 0`, not increase()).
    assert found == {
        ("maximum_gpfn", "raw", "forged_errno", "harmful"): 2,
        ("maximum_gpfn", "raw", "out_of_range", "harmful"): 1,
        ("maximum_gpfn", "syscall", "passed_forged", "harmful"): 2,
        ("maximum_gpfn", "ioctl", "passed_forged", "harmful"): 2}


@pytest.mark.parametrize("name", [n for n in shipped() if n != SCENARIO
                                  and load(n).role == "dom0" and load(n).device == "present"])
def test_no_other_shipped_scenario_has_a_source_finding(name: str) -> None:
    """Healthy hosts, and every other class the mock shows, are clean at the source."""
    _, report = check_json(name)
    assert report["summary"]["source_findings"] == 0
    assert not {r["raw_verdict"] for r in report["results"]} & {v.value for v in
                                                                SOURCE_FINDINGS}


@pytest.mark.parametrize("errname", ["EPERM", "EACCES"])
def test_an_xsm_denial_is_not_forged(tmp_path: Path, errname: str) -> None:
    """An XSM policy denying dom0 maximum_gpfn for every domain (xsm_memory_stat_reservation:
    -EPERM from the dummy module, -EACCES from FLASK): a real error of this call."""
    extra = f'\n[[fault]]\nop = "memory_op"\nsubop = 14\nerrno = "{errname}"\ncount = -1\n'
    _, report = _at(tmp_path, "4.17", extra, base="healthy")
    gpfn = _gpfn(report)
    assert gpfn and all(r["raw"]["errno"] == getattr(errno, errname) for r in gpfn.values())
    assert all(r["raw_verdict"] is None for r in gpfn.values())
    assert report["summary"]["source_findings"] == 0


def test_a_domain_destroyed_mid_sweep_is_not_forged(tmp_path: Path) -> None:
    """ESRCH for a domain that getdomaininfo no longer lists is the real thing."""
    text = resources.files("xenprobe.mock.scenarios").joinpath("healthy.toml").read_text()
    text, n = re.subn(r"(?m)^id = 2$", "id = 2\nvanish_after = 3", text)
    assert n == 1
    p = run_check(["check", "--json", "--mock", "vanish"],
                  env=env_for(parse(text, "vanish.toml", "vanish"), tmp_path))
    assert p.returncode in (0, 1), p.stderr
    report = json_of(p.stdout)
    assert report["summary"]["source_findings"] == 0
    assert any(r["raw"] is not None and r["raw"]["errno"] == errno.ESRCH
               for r in report["results"] if r["domid"] == 2)
