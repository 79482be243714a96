# SPDX-License-Identifier: GPL-2.0-only
"""Findings by impact (xenprobe/probe/impact.py): every finding is shown, and only those a
consumer would read wrong and use set exit 1. Each shipped scenario's findings and exit
code are held to what the consumer census says of its quantities and layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mockhost import check_json, run_check
from xenprobe.mock.scenario import shipped
from xenprobe.probe import impact
from xenprobe.probe.classify import Verdict
from xenprobe.probe.judge import RAW
from xenprobe.xen.quantities import Quantity

# (quantity, layer) -> impact, for every finding of each shipped scenario that sweeps
# (domu is not a control domain: exit 3, no findings).
FINDINGS: dict[str, dict[tuple[str, str], str]] = {
    "healthy": {},
    "balloon": {},
    "hotplug-below-ram": {},
    # DR6's resting value 0xFFFF0FF0 through the int paths: only the dom0 kernel reads it.
    "pv-dom0": {("debug_register_6", "ioctl"): "harmless",
                ("debug_register_6", "syscall"): "harmless"},
    # dom0's UINT_MAX limit as -1/EPERM: no tool issues maximum_reservation.
    "pvh-dom0": {("maximum_reservation", "ioctl"): "harmless",
                 ("maximum_reservation", "syscall"): "harmless"},
    "xen-default": {("maximum_reservation", "ioctl"): "harmless",
                    ("maximum_reservation", "syscall"): "harmless"},
    # Frame numbers past 2^31: libxenctrl < 4.15.1 would misread max_page and max_gpfn.
    "large-memory": {
        ("maximum_ram_page", "ioctl"): "exposure", ("maximum_gpfn", "ioctl"): "exposure",
        **{(q, "syscall"): "harmless" for q in ("maximum_ram_page", "maximum_gpfn",
                                                "current_reservation",
                                                "maximum_reservation")},
        ("current_reservation", "ioctl"): "harmless",
        ("maximum_reservation", "ioctl"): "harmless"},
    "huge-address-space": {
        ("maximum_ram_page", "ioctl"): "exposure", ("maximum_gpfn", "ioctl"): "exposure",
        **{(q, "syscall"): "harmless" for q in ("maximum_ram_page", "maximum_gpfn",
                                                "current_reservation",
                                                "maximum_reservation")},
        ("current_reservation", "ioctl"): "harmless",
        ("maximum_reservation", "ioctl"): "harmless"},
    # The large-memory host on Debian 11 (main's int-path demo): the same exposure.
    "int-path": {
        ("maximum_ram_page", "ioctl"): "exposure", ("maximum_gpfn", "ioctl"): "exposure",
        **{(q, "syscall"): "harmless" for q in ("maximum_ram_page", "maximum_gpfn",
                                                "current_reservation",
                                                "maximum_reservation")},
        ("current_reservation", "ioctl"): "harmless",
        ("maximum_reservation", "ioctl"): "harmless"},
    # PV guests forging max_pfn (main's forged branch): the out-of-range one is truncated
    # by the int paths; the forged errnos are source findings, not mismatches
    # (test_source_findings_take_the_quantitys_impact).
    "pv-guest-max-pfn": {("maximum_gpfn", "ioctl"): "exposure",
                         ("maximum_gpfn", "syscall"): "harmless"},
    # A 32-bit dom0 kernel: Xen clamps max_page for every consumer on it.
    "compat-clamp": {("maximum_ram_page", RAW): "harmful",
                     ("current_reservation", RAW): "harmless",
                     ("maximum_reservation", RAW): "harmless"},
}


def test_every_shipped_scenario_that_sweeps_is_listed() -> None:
    assert set(FINDINGS) == set(shipped()) - {"domu"}


def test_every_quantity_has_its_consumers() -> None:
    assert set(impact.ROWS) == set(Quantity)
    for row in impact.ROWS.values():
        assert row.consumers and row.why, row.quantity
        assert all(c.who and c.cites for c in row.consumers), row.quantity


@pytest.mark.parametrize("scenario", sorted(FINDINGS))
def test_findings_and_exit_code_follow_the_impact(scenario: str) -> None:
    code, report = check_json(scenario)
    got = {(f["quantity"], f["layer"]): f["impact"] for f in report["findings"]}
    assert got == FINDINGS[scenario]
    acts = any(i != "harmless" for i in got.values())
    assert code == report["exit_code"] == (1 if acts else 0)
    for f in report["findings"]:
        assert f["reason"] and f["action"] and f["consumers"], f
        assert f["readings"] == sum(f["verdicts"].values()) > 0


def test_a_harmless_finding_is_shown_with_its_reason() -> None:
    """pv-dom0 (every PV dom0): DR6 is still in the table, the JSON and the summary line,
    with why it harms nobody, and the check exits 0."""
    p = run_check(["check", "--mock", "pv-dom0"])
    assert p.returncode == 0, p.stderr
    assert "sign_flipped" in p.stdout
    assert "debug_register_6 (ioctl, syscall): harmless" in p.stdout
    assert "bit pattern whose reserved upper bits no consumer uses" in p.stdout


def test_exposure_names_what_to_do() -> None:
    p = run_check(["check", "--mock", "large-memory"])
    assert p.returncode == 1, p.stderr
    assert "maximum_ram_page (ioctl): exposure" in p.stdout
    assert "libxenctrl before 4.15.1" in p.stdout


def test_impact_by_layer() -> None:
    assess = impact.assess
    assert assess(Quantity.MAXIMUM_GPFN, "libxc").impact is impact.Impact.HARMFUL
    assert assess(Quantity.MAXIMUM_GPFN, RAW).impact is impact.Impact.HARMFUL
    assert assess(Quantity.MAXIMUM_GPFN, "ioctl").impact is impact.Impact.EXPOSURE
    assert assess(Quantity.MAXIMUM_GPFN, "syscall").impact is impact.Impact.HARMLESS
    assert assess(Quantity.XEN_VERSION, "ioctl").impact is impact.Impact.HARMFUL
    for layer in (RAW, "syscall", "ioctl", "libxc"):
        assert assess(Quantity.DEBUG_REGISTER_6, layer).impact is impact.Impact.HARMLESS
    verdicts = {(Quantity.DEBUG_REGISTER_6, "ioctl", Verdict.SIGN_FLIPPED): 1,
                (Quantity.MAXIMUM_RAM_PAGE, "ioctl", Verdict.MATCH): 1}
    assert not impact.acts(verdicts)
    assert impact.readings_by_impact(verdicts) == {
        impact.Impact.HARMLESS: 1, impact.Impact.EXPOSURE: 0, impact.Impact.HARMFUL: 0}
    verdicts[(Quantity.MAXIMUM_RAM_PAGE, "libxc", Verdict.TRUNCATED)] = 2
    assert impact.acts(verdicts)


def test_the_alerts_doc_has_the_impact_table() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text()
    assert impact.markdown_table() in doc, "regenerate: python3 -c 'from xenprobe " \
        "import impact; print(impact.markdown_table())'"


def test_source_findings_take_the_quantitys_impact() -> None:
    """A raw result wrong at the source is what every consumer of the quantity gets:
    harmful where one reads it (a guest-forged errno on maximum_gpfn fails HVM save and
    dump-core: consumer census D1, D3), harmless where none does, so no exit 1 there."""
    assert impact.source_impact(Quantity.MAXIMUM_GPFN) is impact.Impact.HARMFUL
    assert impact.source_impact(Quantity.XEN_VERSION) is impact.Impact.HARMFUL
    for q in (Quantity.DEBUG_REGISTER_6, Quantity.MAXIMUM_RESERVATION,
              Quantity.CURRENT_RESERVATION):
        assert impact.source_impact(q) is impact.Impact.HARMLESS, q
    assert impact.source_acts([Quantity.DEBUG_REGISTER_6, Quantity.MAXIMUM_GPFN])
    assert not impact.source_acts([Quantity.DEBUG_REGISTER_6, Quantity.VCPU_IS_UP])
    assert not impact.source_acts([])
