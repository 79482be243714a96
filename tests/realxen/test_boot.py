# SPDX-License-Identifier: GPL-2.0-only
"""Smoke test per Xen release: boot, run the independent reader in dom0, check facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .boot import EXPECTED_XEN_VERSION

if TYPE_CHECKING:
    from .conftest import RealXen

pytestmark = pytest.mark.realxen

ESRCH = 3
# XEN_SYSCTL_INTERFACE_VERSION (xen/include/public/sysctl.h at each RELEASE tag)
SYSCTL_VERSION = {"4.14": 0x13, "4.17": 0x15, "4.20": 0x15}


def test_smoke(realxen: RealXen) -> None:
    run, r = realxen.reader()
    mem = r["memory_op"]

    def check(cond: bool, what: str) -> None:
        # Failures carry the reader JSON and the serial log tail: a CI log is enough.
        if not cond:
            raise AssertionError(f"{what}\nreader JSON: {r}\n{run.report(40)}")

    check(
        r["xen_version"] == EXPECTED_XEN_VERSION[realxen.release],
        f"xen_version {r['xen_version_hex']} for Xen {realxen.release}",
    )

    mrp = mem["maximum_ram_page"]
    max_page = mrp["multicall"]
    check(isinstance(max_page, int) and max_page > 0, f"maximum_ram_page multicall: {mrp}")
    if max_page < 2**31:  # only then can the int-returning ioctl carry it intact
        check(mrp["ioctl"] == {"ret": max_page, "errno": 0}, f"maximum_ram_page: {mrp}")

    check(r["sysctl_interface_version"] == SYSCTL_VERSION[realxen.release],
          "sysctl interface version")
    phys = r["physinfo"]
    check("error" not in phys, f"physinfo: {phys}")
    # The only bound Xen guarantees: max_mfn follows the hot-plug range's end or the
    # 2^32 cap without CONFIG_BIGMEM, not the top of RAM (x86/mm.c get_upper_mfn_bound).
    check(phys["total_pages"] <= max_page, f"total_pages {phys['total_pages']} <= max_page "
                                           f"{max_page}")

    info = r["getdomaininfo_0"]
    check("error" not in info and info["domain"] == 0, f"getdomaininfo(0): {info}")
    self_res = mem["current_reservation:self"]
    check(
        self_res["multicall"] == info["tot_pages"],
        f"current_reservation(DOMID_SELF) {self_res} vs getdomaininfo(0).tot_pages",
    )

    nodom = mem["current_reservation:nodom"]
    check(nodom["multicall"] == -ESRCH, f"nonexistent domain, multicall: {nodom}")
    check(nodom["ioctl"] == {"ret": -1, "errno": ESRCH}, f"nonexistent domain, ioctl: {nodom}")
