# SPDX-License-Identifier: GPL-2.0-only
"""Every shipped scenario, end to end: `xenprobe check --json --mock NAME` in a process
of its own on the native mock host. Readings and verdicts are compared with what the
scenario and the documented layer conversions predict (tests/model.py)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from tests.mockhost import check_json
from tests.model import expect, layer_verdict, raw_verdict, source_verdict
from xenprobe.mock.scenario import load, shipped
from xenprobe.xen.quantities import UNBATCHED

# A host without multicalls has no raw layer: tests/test_pvh.py covers it.
PROBING = [n for n in shipped() if load(n).role == "dom0" and load(n).device == "present"
           and load(n).multicall]


@pytest.fixture(scope="module", params=PROBING)
def outcome(request: pytest.FixtureRequest) -> tuple[str, int, dict[str, Any]]:
    code, report = check_json(request.param)
    return request.param, code, report


def test_detects_release_and_interfaces(outcome: tuple[str, int, dict[str, Any]]) -> None:
    name, _, report = outcome
    s = load(name)
    assert report["host"]["release"] == s.release.name
    assert report["host"]["version"] == f"{s.release.name}{s.extraversion}"
    assert report["host"]["sysctl_interface"] == s.release.sysctl
    assert report["host"]["domctl_interface"] == s.release.domctl
    assert report["host"]["physinfo_layout"] == s.release.physinfo.name
    assert report["domains"] == len(s.domains)


def test_readings_and_verdicts_follow_the_model(
        outcome: tuple[str, int, dict[str, Any]]) -> None:
    name, code, report = outcome
    s = load(name)
    moving = {d.domid for d in s.domains if d.balloon}
    mismatches = 0
    for r in report["results"]:
        if r["domid"] in moving:
            continue  # see test_drift_is_never_truncation
        e = expect(s, r["quantity"], r["domid"], r["vcpu"])
        where = f"{name}: {r['quantity']} {r['subject']} {r['domid']}"
        source = source_verdict(s, r["quantity"], r["domid"], e.raw) \
            if r["raw"] is not None else None
        if r["raw"] is None:  # a sysctl: no multicall, judged by the reference alone
            assert r["quantity"] in {q.value for q in UNBATCHED}, where
        else:
            assert r["raw"]["value"] == e.raw, where
        for layer, predicted in (("syscall", e.syscall), ("ioctl", e.ioctl)):
            got = r["layers"][layer]
            assert (got["value"], got["errno"]) == (predicted.value, predicted.errno), \
                f"{where} {layer}"
            assert got["verdict"] == layer_verdict(e.raw, predicted,
                                                   source == "forged_errno"), \
                f"{where} {layer}"
            mismatches += got["verdict"] != "match"
        if r["raw"] is None:
            assert r["raw_verdict"] == "absent", where
        elif source is not None:
            assert r["raw_verdict"] == source, where
            mismatches += 1
        elif r["raw_verdict"] is not None:
            assert r["raw_verdict"] == raw_verdict(e), where
            mismatches += r["raw_verdict"] != "match"
    # Every mismatch is a finding; only one a consumer would read wrong sets exit 1.
    assert bool(report["findings"]) == bool(mismatches)
    acts = any(f["impact"] != "harmless" for f in report["findings"])
    assert code == report["exit_code"] == (1 if acts else 0)


def test_healthy_host_is_clean() -> None:
    code, report = check_json("healthy")
    assert code == 0
    assert report["summary"]["mismatches"] == 0
    verdicts = {lay["verdict"] for r in report["results"] for lay in r["layers"].values()}
    # A layer this host does not offer (libxc without libxenctrl) is absent, not a mismatch.
    assert verdicts - {"absent"} == {"match"}
    assert {r["raw_verdict"] for r in report["results"]} <= {"match", None}
    assert all(not r["at_risk"] for r in report["results"])


def test_frame_bound_below_max_page_is_clean() -> None:
    """physinfo's max_mfn follows the hot-plug bound (or the 2^32 cap without BIGMEM),
    not max_page: a host whose RAM reaches above max_mfn + 1 is healthy, and its
    maximum_ram_page must not be judged against max_mfn."""
    s = load("hotplug-below-ram")
    assert s.max_page > s.max_mfn + 1 and s.total_pages > s.max_mfn + 1
    code, report = check_json("hotplug-below-ram")
    assert code == 0, report
    (mrp,) = [r for r in report["results"] if r["quantity"] == "maximum_ram_page"]
    assert mrp["raw"]["value"] == s.max_page
    assert mrp["raw_verdict"] == "match"
    assert report["summary"]["mismatches"] == 0


# Each truncation class the project claims, and the scenario that shows it.
CLAIMS = [
    ("large-memory", "maximum_ram_page", "ioctl", "sign_flipped"),
    ("large-memory", "current_reservation", "ioctl", "sign_flipped"),
    ("large-memory", "maximum_gpfn", "ioctl", "aliased_errno"),
    ("huge-address-space", "maximum_ram_page", "ioctl", "truncated"),
    ("huge-address-space", "maximum_gpfn", "syscall", "truncated"),
    ("huge-address-space", "current_reservation", "ioctl", "sign_flipped"),
    ("compat-clamp", "current_reservation", "raw", "clamped"),
    ("compat-clamp", "maximum_ram_page", "raw", "clamped"),
    ("xen-default", "maximum_reservation", "ioctl", "aliased_errno"),
    ("xen-default", "maximum_reservation", "syscall", "aliased_errno"),
]


@pytest.mark.parametrize(("scenario", "quantity", "layer", "verdict"), CLAIMS)
def test_claimed_class_is_detected(scenario: str, quantity: str, layer: str,
                                   verdict: str) -> None:
    _, report = check_json(scenario)
    seen = {(r["raw_verdict"] if layer == "raw" else r["layers"][layer]["verdict"])
            for r in report["results"] if r["quantity"] == quantity}
    assert verdict in seen


def test_xen_default_dom0_limit_reads_as_eperm() -> None:
    """Xen's default dom0 (no dom0_mem=...,max:) has max_pages = UINT_MAX: the int paths
    turn it into -1/EPERM, for dom0 by id and for DOMID_SELF alike. The tuned host
    (healthy) is the same but for that limit, and is clean. No tool issues
    maximum_reservation, so the finding is harmless: exit 0."""
    code, report = check_json("xen-default")
    assert code == 0
    got = {r["subject"]: r for r in report["results"]
           if r["quantity"] == "maximum_reservation" and r["domid"] in (0, 0x7FF0)}
    assert set(got) == {"self", "domain"}
    for r in got.values():
        assert r["raw"]["value"] == 0xFFFFFFFF and r["raw_verdict"] == "match"
        for layer in ("ioctl", "syscall"):
            assert r["layers"][layer] == {"value": -1, "errno": errno.EPERM, "width":
                                          32 if layer == "ioctl" else 64,
                                          "verdict": "aliased_errno"}
    mismatched = {(r["quantity"], r["domid"]) for r in report["results"]
                  if any(v["verdict"] not in ("match", "absent") for v in r["layers"].values())}
    assert mismatched == {("maximum_reservation", 0), ("maximum_reservation", 0x7FF0)}


def test_drift_is_never_truncation() -> None:
    s = load("balloon")
    moving = {d.domid for d in s.domains if d.balloon}
    for _ in range(3):
        _, report = check_json("balloon")
        for r in report["results"]:
            verdicts = {r["raw_verdict"], *(v["verdict"] for v in r["layers"].values())}
            assert verdicts <= {"match", "drift", "absent", None}, r
        drifted = {r["domid"] for r in report["results"]
                   if "drift" in {v["verdict"] for v in r["layers"].values()}}
        assert drifted <= moving | {None}
        assert drifted, "the ballooning domain should have been seen moving"


def test_missing_domain_error_path() -> None:
    for name in PROBING:
        _, report = check_json(name)
        (missing,) = [r for r in report["results"] if r["subject"] == "missing"]
        assert missing["raw"]["errno"] == 3, name
        assert missing["layers"]["ioctl"] == {"value": -1, "errno": 3, "width": 32,
                                              "verdict": "match"}


ALIAS_HOST = """description = "a valid gpfn whose low 32 bits read as -EINTR, one as -EAGAIN"
[xen]
release = "4.17"
[host]
memory = "16 GiB"
[[domain]]
id = 0
memory = "2 GiB"
max_memory = "2 GiB"
[[domain]]
id = 1
memory = "1 GiB"
hvm = true
max_gpfn = 0xFFFFFFFC
[[domain]]
id = 2
memory = "1 GiB"
hvm = true
max_gpfn = 0x1FFFFFFF5
"""


def test_a_value_aliasing_eintr_is_not_retried(tmp_path: Path) -> None:
    """0xFFFFFFFC reads as -1/EINTR and 0x1FFFFFFF5 as -1/EAGAIN through the int paths.
    The raw multicall result shows a valid value, so that -1 is an alias, not a
    transient failure: it is reported as aliased_errno, and no retry is counted."""
    path = tmp_path / "alias.toml"
    path.write_text(ALIAS_HOST)
    code, report = check_json(str(path))
    assert code == 1
    got = {(r["domid"], layer): (v["value"], v["errno"], v["verdict"])
           for r in report["results"] if r["quantity"] == "maximum_gpfn"
           for layer, v in r["layers"].items() if layer in ("ioctl", "syscall")}
    for layer in ("ioctl", "syscall"):
        assert got[(1, layer)] == (-1, errno.EINTR, "aliased_errno")
        assert got[(2, layer)] == (-1, errno.EAGAIN, "aliased_errno")
    assert report["retries"] == {}
