# SPDX-License-Identifier: GPL-2.0-only
"""Property tests for every decoder between the hypervisor's bytes and xenprobe's values
(test_layouts.py has the Layout round trips): a getdomaininfo record to DomainInfo, the
sweep's fast (domain, tot_pages, max_pages) unpacking, getdomaininfolist in chunks
against a model of Xen's answer, the sanity checks on physinfo and on a domain list, and
a scenario compiled for the mock and decoded back."""

from __future__ import annotations

import re
import struct
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenprobe.mock.scenario import compile_text, parse
from xenprobe.support.errors import CannotProbe
from xenprobe.xen import host as hostmod
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.abi.layouts import (
    DOMINF_HVM_GUEST,
    GETDOMAININFO_4_11,
    GETDOMAININFO_4_15,
    GETDOMAININFO_4_16,
    GETDOMAININFOLIST,
    PHYSINFO_4_10,
    PHYSINFO_4_17,
    Layout,
)
from xenprobe.xen.abi.releases import RELEASES, getdomaininfo_for_domctl, physinfo_for_sysctl
from xenprobe.xen.host import MAX_FRAMES, Host, _domain, invalid_physinfo
from xenprobe.xen.reading import Reading
from xenprobe.xen.transport import Buffer

GETDOMAININFOS = [GETDOMAININFO_4_11, GETDOMAININFO_4_15, GETDOMAININFO_4_16]
u16 = st.integers(0, hc.DOMID_FIRST_RESERVED - 1)
u64 = st.integers(0, (1 << 64) - 1)


def record(layout: Layout, data: st.DataObject) -> dict[str, int | bytes]:
    values: dict[str, int | bytes] = {}
    for f in layout.fields:
        if f.fmt.endswith("s"):
            values[f.name] = data.draw(st.binary(min_size=f.size, max_size=f.size))
        else:
            values[f.name] = data.draw(st.integers(0, (1 << (8 * f.size)) - 1))
    return values


@pytest.mark.parametrize("layout", GETDOMAININFOS, ids=lambda layout: layout.name)
@settings(deadline=None)
@given(data=st.data())
def test_a_record_decodes_to_its_domain(layout: Layout, data: st.DataObject) -> None:
    values = record(layout, data)
    d = _domain(layout.decode(layout.encode(values)))
    assert (d.domid, d.flags, d.tot_pages, d.max_pages, d.handle) == (
        values["domain"], values["flags"], values["tot_pages"], values["max_pages"],
        values["handle"])


@pytest.mark.parametrize("layout", GETDOMAININFOS, ids=lambda layout: layout.name)
@settings(deadline=None)
@given(data=st.data(), n=st.integers(0, 5))
def test_the_fast_page_unpacking_agrees_with_the_layout(layout: Layout, data: st.DataObject,
                                                        n: int) -> None:
    records = [record(layout, data) for _ in range(n)]
    raw = b"".join(layout.encode(r) for r in records)
    fake = SimpleNamespace(identity=SimpleNamespace(getdomaininfo=layout))
    pages = Host._pages.func(fake)  # type: ignore[attr-defined]
    assert list(pages.iter_unpack(raw)) == [
        (r["domain"], r["tot_pages"], r["max_pages"]) for r in records]
    handles = Host._handles.func(fake)  # type: ignore[attr-defined]
    assert list(handles.iter_unpack(raw)) == [(r["domain"], r["handle"]) for r in records]


# -- getdomaininfolist in chunks, against a model of Xen's answer -------------------------

class ListingXen:
    """sysctl getdomaininfolist as Xen answers it: up to max_domains records of the
    domains with id >= first_domain, in id order, written to the caller's buffer."""

    def __init__(self, host: Host, domains: dict[int, tuple[int, int]], layout: Layout,
                 garbage: int = 0) -> None:
        self.host, self.domains, self.layout = host, domains, layout
        self.garbage = garbage  # this many answers claim more records than asked for
        self.calls = 0

    def ioctl(self, op: int, args: tuple[int, ...]) -> Reading:
        assert op == hc.SYSCTL and args[0] == self.host._ctl.address
        view = self.host._ctl.view
        cmd, = struct.unpack_from("<I", view, 0)
        assert cmd == hc.XEN_SYSCTL_getdomaininfolist
        req = GETDOMAININFOLIST.decode(bytes(view), hc.SYSCTL_UNION)
        records = self.host._records
        assert records is not None and req["buffer"] == records.address
        first, most = int(req["first_domain"]), int(req["max_domains"])
        ids = sorted(d for d in self.domains if d >= first)[:most]
        for i, domid in enumerate(ids):
            tot, mx = self.domains[domid]
            records.view[i * self.layout.size:(i + 1) * self.layout.size] = \
                self.layout.encode({"domain": domid, "tot_pages": tot, "max_pages": mx})
        self.calls += 1
        n = len(ids) if self.calls > self.garbage else most + 1 + self.calls
        struct.pack_into("<I", view, hc.SYSCTL_UNION + 16, n)
        return Reading(0, 0, 32)


def listing_host(layout: Layout, domains: dict[int, tuple[int, int]], garbage: int = 0
                 ) -> tuple[Host, ListingXen]:
    h = Host.__new__(Host)  # no device: the listing is all that runs
    h._ctl = Buffer(max(hc.SYSCTL_SIZE, hc.DOMCTL_SIZE))
    h._records = None
    release = RELEASES[(4, 17)]
    h.identity = hostmod.Identity(4, 17, ".0", release, 0x15, 0x15,
                                  physinfo_for_sysctl(0x15), layout)
    xen = ListingXen(h, domains, layout, garbage)
    h.dev = SimpleNamespace(ioctl=xen.ioctl, retries=Counter())  # type: ignore[assignment]
    return h, xen


@settings(max_examples=60, deadline=None)
@given(layout=st.sampled_from(GETDOMAININFOS),
       domains=st.dictionaries(u16, st.tuples(st.integers(0, 2**32 - 1),
                                              st.integers(0, 2**32 - 1)), max_size=40),
       chunk=st.integers(1, 8))
def test_the_domain_list_in_chunks(layout: Layout, domains: dict[int, tuple[int, int]],
                                   chunk: int) -> None:
    h, xen = listing_host(layout, domains)
    saved = hostmod.LIST_CHUNK
    hostmod.LIST_CHUNK = chunk
    try:
        assert h.domain_pages() == domains
        listed = h.domains()
    finally:
        hostmod.LIST_CHUNK = saved
        h.close()
    assert [(d.domid, d.tot_pages, d.max_pages) for d in listed] == [
        (domid, *domains[domid]) for domid in sorted(domains)]
    # One call per full chunk, and one that comes back short (perhaps empty), unless
    # the last full chunk ended at the last domain id there can be.
    ends = len(domains) % chunk == 0 and hc.DOMID_FIRST_RESERVED - 1 in domains
    assert xen.calls == 2 * (len(domains) // chunk + (0 if ends else 1))


@settings(deadline=None)
@given(domains=st.dictionaries(u16, st.tuples(st.just(1), st.just(2)), min_size=1,
                               max_size=10), garbage=st.integers(1, 6))
def test_an_impossible_domain_count_is_read_again_then_refused(
        domains: dict[int, tuple[int, int]], garbage: int) -> None:
    h, _ = listing_host(GETDOMAININFO_4_16, domains, garbage)
    try:
        if garbage <= hostmod.RETRIES:
            assert h.domain_pages() == domains
            assert h.dev.retries[("getdomaininfolist", "invalid")] == garbage
        else:
            with pytest.raises(CannotProbe, match=r"num_domains .* above max_domains"):
                h.domain_pages()
    finally:
        h.close()


@settings(deadline=None)
@given(ids=st.lists(u16, min_size=2, max_size=6, unique=True))
def test_domain_ids_out_of_order_are_impossible(ids: list[int]) -> None:
    h, _ = listing_host(GETDOMAININFO_4_16, {})
    try:
        raw = b"".join(GETDOMAININFO_4_16.encode({"domain": d}) for d in ids)
        problem = h._invalid_list(0, len(ids), raw)
        assert (problem == "") is (ids == sorted(ids))
        assert h._invalid_list(max(ids) + 1, len(ids), raw) != ""  # before first_domain
    finally:
        h.close()


# -- physinfo -------------------------------------------------------------------------

@settings(deadline=None)
@given(layout=st.sampled_from([PHYSINFO_4_10, PHYSINFO_4_17]), data=st.data())
def test_physinfo_sanity(layout: Layout, data: st.DataObject) -> None:
    values = record(layout, data)
    info = layout.decode(layout.encode(values))
    total, free, max_mfn = (int(values[k]) for k in ("total_pages", "free_pages", "max_mfn"))
    possible = (max_mfn < MAX_FRAMES and total <= MAX_FRAMES and free <= total
                and not (max_mfn == 0 and total > 1))
    assert (invalid_physinfo(info) == "") is possible


@settings(deadline=None)
@given(max_mfn=st.integers(1, MAX_FRAMES - 1), data=st.data())
def test_every_real_physinfo_passes(max_mfn: int, data: st.DataObject) -> None:
    # total_pages may pass max_mfn + 1: max_mfn is the hot-plug or 2^32 bound.
    total = data.draw(st.integers(0, MAX_FRAMES))
    free = data.draw(st.integers(0, total))
    assert invalid_physinfo({"total_pages": total, "free_pages": free,
                             "max_mfn": max_mfn}) == ""


# -- a scenario compiled for the mock, decoded back -------------------------------------

@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    release = draw(st.sampled_from(sorted(f"{a}.{b}" for a, b in RELEASES)))
    domains = draw(st.dictionaries(
        u16, st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                       st.booleans(), st.integers(1, 64)), min_size=1, max_size=6))
    total = draw(st.integers(1, 2**40))
    max_page = draw(st.integers(total, 2**41))
    text = (f'[xen]\nrelease = "{release}"\n[host]\ntotal_pages = {total}\n'
            f"max_page = {max_page}\nnr_cpus = {draw(st.integers(1, 4096))}\n")
    for domid, (tot, mx, hvm, vcpus) in domains.items():
        text += (f"[[domain]]\nid = {domid}\ntot_pages = {tot}\nmax_pages = {mx}\n"
                 f"hvm = {str(hvm).lower()}\nvcpus = {vcpus}\n")
    return text, {"domains": domains, "total": total, "max_page": max_page}


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_compiled_scenarios_decode_back(case: tuple[str, dict[str, Any]]) -> None:
    text, want = case
    s = parse(text, "gen.toml", "gen")
    compiled = compile_text(s)
    layout = getdomaininfo_for_domctl(s.domctl_interface)
    got = {}
    for m in re.finditer(r"(?m)^domain (\d+) (\d+) (\d+) (\d+) ([0-9a-f]+)$", compiled):
        domid, tot, mx = int(m.group(1)), int(m.group(2)), int(m.group(3))
        rec = layout.decode(bytes.fromhex(m.group(5)))
        assert (rec["domain"], rec["tot_pages"], rec["max_pages"]) == (domid, tot, mx)
        hvm = bool(int(rec["flags"]) & DOMINF_HVM_GUEST)
        got[domid] = (tot, mx, hvm, int(rec["nr_online_vcpus"]))
        assert rec["handle"] == uuid.uuid5(uuid.NAMESPACE_OID, f"xenprobe-gen-{domid}").bytes
    assert got == want["domains"]
    (hexed,) = re.findall(r"(?m)^physinfo ([0-9a-f]+)$", compiled)
    info = physinfo_for_sysctl(s.sysctl_interface).decode(bytes.fromhex(hexed))
    assert info["total_pages"] == want["total"]
    assert info["max_mfn"] == want["max_page"] - 1
    assert invalid_physinfo(info) == ""
    assert f"max_page {want['max_page']}\n" in compiled
