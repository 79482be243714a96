# SPDX-License-Identifier: GPL-2.0-only
"""The ABI tables against the facts in shared/reference/xen-abi.md."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.abi.layouts import (
    GETDOMAININFO_4_11,
    GETDOMAININFO_4_15,
    GETDOMAININFO_4_16,
    GETDOMAININFOLIST,
    PHYSINFO_4_10,
    PHYSINFO_4_17,
    Layout,
)
from xenprobe.xen.abi.releases import RELEASES, by_name, getdomaininfo_for_domctl

LAYOUTS = [PHYSINFO_4_10, PHYSINFO_4_17, GETDOMAININFO_4_11, GETDOMAININFO_4_15,
           GETDOMAININFO_4_16, GETDOMAININFOLIST]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_fields_fit_and_do_not_overlap(layout: Layout) -> None:
    spans = sorted((f.offset, f.offset + f.size) for f in layout.fields)
    assert spans[-1][1] <= layout.size
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    # Natural alignment, as the C compiler lays them out.
    for f in layout.fields:
        if f.fmt in "HIQ":
            assert f.offset % f.size == 0, f.name


def test_documented_offsets() -> None:
    assert PHYSINFO_4_10.field("total_pages").offset == 32
    assert PHYSINFO_4_17.field("total_pages").offset == 40
    assert PHYSINFO_4_17.field("max_mfn").offset == 72
    assert (PHYSINFO_4_10.size, PHYSINFO_4_17.size) == (104, 112)
    assert [g.size for g in (GETDOMAININFO_4_11, GETDOMAININFO_4_15, GETDOMAININFO_4_16)] \
        == [104, 104, 112]
    assert GETDOMAININFO_4_16.field("tot_pages").offset == 8
    assert GETDOMAININFO_4_16.field("cpupool").offset == 92
    # Every struct fits in the 128-byte sysctl/domctl union.
    assert max(layout.size for layout in LAYOUTS) <= 128


def test_release_table() -> None:
    r417, r420 = by_name("4.17"), by_name("4.20")
    assert (r417.sysctl, r417.domctl, r417.version_word) == (0x15, 0x15, 0x40011)
    assert (r420.sysctl, r420.domctl, r420.version_word) == (0x15, 0x17, 0x40014)
    assert not r417.getdomaininfo_exact and by_name("4.18").getdomaininfo_exact
    assert {(4, m) for m in range(13, 21)} <= set(RELEASES)
    for r in RELEASES.values():
        assert getdomaininfo_for_domctl(r.domctl) is r.getdomaininfo
    with pytest.raises(KeyError, match=r"supported: 4\.13 to 4\.22"):
        by_name("4.9")


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
@given(data=st.data())
def test_encode_decode_round_trip(layout: Layout, data: st.DataObject) -> None:
    values: dict[str, int | bytes] = {}
    for f in layout.fields:
        if f.fmt.endswith("s"):
            values[f.name] = data.draw(st.binary(min_size=f.size, max_size=f.size))
        else:
            values[f.name] = data.draw(st.integers(0, (1 << (8 * f.size)) - 1))
    buf = layout.encode(values)
    assert len(buf) == layout.size
    assert layout.decode(buf) == values


@given(st.binary(max_size=200))
def test_decode_never_reads_past_the_buffer(buf: bytes) -> None:
    for layout in LAYOUTS:
        if len(buf) < layout.size:
            with pytest.raises(ValueError, match="needs"):
                layout.decode(buf)
        else:
            assert set(layout.decode(buf)) == {f.name for f in layout.fields}


def test_constants() -> None:
    assert (hc.MEMORY_OP, hc.MULTICALL, hc.XEN_VERSION, hc.SYSCTL, hc.DOMCTL) == \
        (12, 13, 17, 35, 36)
    assert hc.DOMID_SELF == 0x7FF0
