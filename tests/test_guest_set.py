# SPDX-License-Identifier: GPL-2.0-only
"""Values a domU sets by itself (quantities.GUEST_SET): marked in check's output and in
the metrics (no alert of their own: alerts follow impact, docs/alerts.md)."""

from __future__ import annotations

from pathlib import Path

from tests.mockhost import check_json, run_check
from xenprobe.xen.quantities import GUEST_SET, Probe, Quantity, Subject

DOMID_SELF = 0x7FF0


def test_only_a_domus_own_balloon_and_gpfn_are_guest_set() -> None:
    assert set(GUEST_SET) == {Quantity.CURRENT_RESERVATION, Quantity.MAXIMUM_GPFN}
    assert Probe(Quantity.CURRENT_RESERVATION, Subject.DOMAIN, 3).guest_set
    assert Probe(Quantity.MAXIMUM_GPFN, Subject.DOMAIN, 4).guest_set
    # The toolstack sets a domain's maximum; dom0's values are its own kernel's; the
    # host's are the hypervisor's; a missing domain has none.
    assert not Probe(Quantity.MAXIMUM_RESERVATION, Subject.DOMAIN, 3).guest_set
    assert not Probe(Quantity.CURRENT_RESERVATION, Subject.DOMAIN, 0).guest_set
    assert not Probe(Quantity.CURRENT_RESERVATION, Subject.SELF, DOMID_SELF).guest_set
    assert not Probe(Quantity.CURRENT_RESERVATION, Subject.MISSING, 0x7000).guest_set
    assert not Probe(Quantity.MAXIMUM_RAM_PAGE, Subject.HOST).guest_set


def test_output_and_metrics_mark_guest_set_values(tmp_path: Path) -> None:
    """large-memory: dom3's 10 TiB (sign-flipped) and dom4's gpfn 0xFFFFFFFE (ENOENT)
    are values those guests set themselves; the JSON says so per result, the table
    marks them, and xenprobe_guest_set_mismatch_verdicts counts exactly those mismatches."""
    _, report = check_json("large-memory")
    for r in report["results"]:
        want = (r["subject"] == "domain" and r["domid"] != 0
                and r["quantity"] in ("current_reservation", "maximum_gpfn"))
        assert r["guest_set"] is want, r
    expected: dict[tuple[str, str, str], int] = {}
    for r in report["results"]:
        if r["guest_set"]:
            for layer, v in r["layers"].items():
                if v["verdict"] not in ("match", "absent", "drift"):
                    key = (r["quantity"], layer, v["verdict"])
                    expected[key] = expected.get(key, 0) + 1
    assert ("maximum_gpfn", "ioctl", "aliased_errno") in expected
    assert ("current_reservation", "ioctl", "sign_flipped") in expected
    prom = tmp_path / "x.prom"
    run_check(["check", "--mock", "large-memory", "--textfile", str(prom)])
    got: dict[tuple[str, str, str], int] = {}
    for line in prom.read_text().splitlines():
        if line.startswith("xenprobe_guest_set_mismatch_verdicts{"):
            labels = dict(kv.split("=") for kv in line[line.index("{") + 1:
                                                       line.index("}")].split(","))
            key = tuple(labels[k].strip('"') for k in ("quantity", "layer", "verdict"))
            got[(key[0], key[1], key[2])] = int(float(line.rsplit(" ", 1)[1]))
    got = {k: n for k, n in got.items() if n}
    assert got == expected
    table = run_check(["check", "--mock", "large-memory"]).stdout
    assert "32 bits; at risk: compat, errno_alias, int32; guest-set" in table
