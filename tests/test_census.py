# SPDX-License-Identifier: GPL-2.0-only
"""The census, the probe list, the native allow-list and the refusal proof in step.

Every census row (tests.census) is probed, refused by name in the refusal proof
(tests/test_readonly.py), or out of reach with its reason; the native allow-list holds
the probed rows and none of the refused ones, and grows by nothing the census does not
explain."""

from __future__ import annotations

from pathlib import Path

import pytest
from xenprobe._transport import ffi, lib

from tests.census import ROWS, Build, Effect, Row, Status, by_status, markdown_table
from tests.test_allowlist import check, entry
from tests.test_readonly import REFUSED_BY_NAME
from xenprobe.xen.abi import census_ops as co
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.quantities import CALLS

# Allowed pairs that are not census rows, and why: their success rc is 0 (the data go
# to a buffer), so they are outside the census (rc-census.md section 2).
ALLOWED_OUTSIDE_CENSUS = {
    *((hc.XEN_VERSION, n) for n in (1, 2, 3, 4, 5, 6, 8, 9)),  # strings, structs
}


# The entries of the census's resource_op rows: R6 reads an MSR, S6 writes one.
RESOURCE_ENTRY_CMD = {"R6": co.XEN_RESOURCE_OP_MSR_READ, "S6": co.XEN_RESOURCE_OP_MSR_WRITE}


def allowed(row: Row) -> bool:
    """Whether the native allow-list lets this row's request through."""
    if row.by_struct:
        if row.op == co.PLATFORM_OP:
            ok = int(lib.xp_check_platform_cmd(row.subop)) == 0
            if row.key in RESOURCE_ENTRY_CMD:
                e = ffi.new("xp_resource_entry[1]")
                e[0].cmd = RESOURCE_ENTRY_CMD[row.key]
                ok = ok and int(lib.xp_check_resource_count(1)) == 0 \
                    and int(lib.xp_check_resource_entries(e, 1)) == 0
            return ok
        if row.op == hc.SYSCTL:
            return int(lib.xp_check_sysctl_cmd(row.subop)) == 0
        if row.op == hc.DOMCTL:
            return int(lib.xp_check_domctl_cmd(row.subop)) == 0
        return check(row.op, 0) == 0  # no other struct-carrying op is on the list
    return check(row.op, row.subop) == 0


def test_every_row_is_probed_refused_or_out_of_reach_with_a_reason() -> None:
    keys = [r.key for r in ROWS]
    assert len(keys) == len(set(keys))
    for r in ROWS:
        assert "@4." in r.cites, r.key
        if r.status is Status.OUT_OF_REACH:
            assert r.reason, r.key
            assert r.effect is Effect.READ_ONLY, r.key
        if r.status is Status.REFUSED:
            assert r.effect is Effect.STATE_CHANGING, r.key
        if r.effect is Effect.STATE_CHANGING:
            assert r.status is Status.REFUSED, r.key
        if r.build is Build.NON_DEFAULT and r.effect is Effect.READ_ONLY:
            assert r.status is Status.OUT_OF_REACH, r.key


@pytest.mark.parametrize("row", by_status(Status.PROBED), ids=lambda r: r.key)
def test_probed_rows_are_quantities_on_the_allow_list(row: Row) -> None:
    assert (row.op, row.subop) in CALLS.values()
    assert allowed(row)
    if not row.by_struct:
        assert entry(row.op, row.subop) == 0, "a by-value read may go in a multicall"


@pytest.mark.parametrize("row", by_status(Status.REFUSED), ids=lambda r: r.key)
def test_refused_rows_are_named_in_the_refusal_proof_and_refused(row: Row) -> None:
    name, op, subop, where = REFUSED_BY_NAME[row.key]
    assert (op, subop) == (row.op, row.subop)
    assert name.split()[0] == row.subop_name.split()[0]
    assert (where != "value") is row.by_struct
    assert not allowed(row)
    if row.op != co.PLATFORM_OP:
        assert entry(row.op, row.subop) != 0
    # A platform_op multicall entry's struct is copied and judged like a single call's
    # (transport.c); test_readonly.py proves S5 and S6 refused inside a multicall.


def test_the_refusal_proof_names_nothing_the_census_lacks() -> None:
    assert set(REFUSED_BY_NAME) == {r.key for r in by_status(Status.REFUSED)}


@pytest.mark.parametrize("row", by_status(Status.OUT_OF_REACH), ids=lambda r: r.key)
def test_out_of_reach_rows_are_not_issued(row: Row) -> None:
    assert (row.op, row.subop) not in CALLS.values()
    assert not allowed(row), row.key


def test_the_allow_list_holds_nothing_the_census_does_not_explain() -> None:
    by_value = {(r.op, r.subop) for r in ROWS if not r.by_struct}
    for op in range(64):
        for sub in range(64):
            if op in (hc.MULTICALL, hc.SYSCTL, hc.DOMCTL, co.PLATFORM_OP):
                continue  # struct-carrying: their cmds are checked below
            if check(op, sub) == 0:
                assert (op, sub) in by_value | ALLOWED_OUTSIDE_CENSUS, (op, sub)
    # sysctl/domctl cmds on the list are the struct reads xenprobe's references use
    # (physinfo, getdomaininfolist, getdomaininfo): success rc 0, outside the census;
    # and the census's own struct row, livepatch_op (R7, LIST only: test_allowlist.py).
    by_struct = {r.subop for r in ROWS if r.by_struct and r.op == hc.SYSCTL
                 and r.status is Status.PROBED}
    assert by_struct == {co.XEN_SYSCTL_livepatch_op}
    assert [c for c in range(1 << 10) if lib.xp_check_sysctl_cmd(c) == 0] == [
        hc.XEN_SYSCTL_physinfo, hc.XEN_SYSCTL_getdomaininfolist, *sorted(by_struct)]
    assert [c for c in range(1 << 10) if lib.xp_check_domctl_cmd(c) == 0] == [
        hc.XEN_DOMCTL_getdomaininfo]
    # platform_op cmds on the list are the census's probed rows R6 and R5.
    probed = {r.subop for r in by_status(Status.PROBED) if r.op == co.PLATFORM_OP}
    assert [c for c in range(1 << 10) if lib.xp_check_platform_cmd(c) == 0] == sorted(probed)


def test_the_readme_table_has_every_row() -> None:
    table = markdown_table().splitlines()
    assert len(table) == 2 + len(ROWS)
    for r, line in zip(ROWS, table[2:], strict=True):
        assert line.startswith(f"| {r.key} | {r.hypercall}({r.op}) /"), line
        assert r.status.value in line
        assert line.replace("\\|", "").count("|") == 8, line  # seven cells, no stray bar
    census = (Path(__file__).resolve().parents[1] / "docs" / "census.md").read_text()
    assert markdown_table() in census, "docs/census.md's rc census table is not markdown_table()"
