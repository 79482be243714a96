# SPDX-License-Identifier: GPL-2.0-only
"""The Xen host as xenprobe sees it through privcmd: which release, which interface
versions, physinfo and the domain list. An I/O shell: decoding lives in abi.layouts."""

from __future__ import annotations

import errno as errnos
import functools
import operator
import os
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from xenprobe.support.errors import CannotProbe
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.abi.layouts import GETDOMAININFOLIST, Layout
from xenprobe.xen.abi.releases import (
    DOMCTL_INTERFACES,
    RELEASES,
    SYSCTL_INTERFACES,
    Release,
    getdomaininfo_for_domctl,
    physinfo_for_sysctl,
    supported,
)
from xenprobe.xen.reading import RETRYABLE, Reading
from xenprobe.xen.transport import RETRIES, Buffer, Privcmd, args5

log = structlog.get_logger("xenprobe.xen.host")

SYS_HYPERVISOR = Path("/sys/hypervisor")
LIST_CHUNK = 1024  # domains per getdomaininfolist call


@dataclass(frozen=True)
class Identity:
    """What the running hypervisor is, as detected (not as configured)."""

    major: int
    minor: int
    extraversion: str
    release: Release
    sysctl: int
    domctl: int
    physinfo: Layout
    getdomaininfo: Layout

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}{self.extraversion}"

    def as_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "release": self.release.name,
            "sysctl_interface": self.sysctl,
            "domctl_interface": self.domctl,
            "physinfo_layout": self.physinfo.name,
            "getdomaininfo_layout": self.getdomaininfo.name,
        }


@dataclass(frozen=True)
class DomainInfo:
    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    handle: bytes = bytes(16)
    max_vcpu_id: int = 0


class DomainPages(Mapping[int, tuple[int, int]]):
    """domid -> (tot_pages, max_pages) of every listed domain, kept as three columns of
    machine integers in the listing's order, which is increasing domid (Xen walks its
    sorted domain list; Host._invalid_list refuses any other order). A sweep reads one
    before and one after every attempt: 10,000 domains in 180 KB rather than a dict of
    tuples of about 1.5 MB, and a sweep takes a whole column at once (`tot`, `max`)."""

    __slots__ = ("ids", "max", "tot")

    def __init__(self, rows: Iterable[tuple[int, int, int]] = ()) -> None:
        self.ids = array("l")   # domid, increasing
        self.tot = array("Q")   # tot_pages, uint64_aligned_t in public/domctl.h
        self.max = array("Q")   # max_pages
        self.extend(rows)

    def extend(self, rows: Iterable[tuple[int, int, int]]) -> None:
        columns = list(zip(*rows, strict=True))
        if columns:
            ids, tot, most = columns
            self.ids.extend(ids)
            self.tot.extend(tot)
            self.max.extend(most)

    def _at(self, domid: object) -> int:
        i = bisect_left(self.ids, domid) if isinstance(domid, int) else len(self.ids)
        return i if i < len(self.ids) and self.ids[i] == domid else -1

    def __getitem__(self, domid: int) -> tuple[int, int]:
        i = self._at(domid)
        if i < 0:
            raise KeyError(domid)
        return self.tot[i], self.max[i]

    def __contains__(self, domid: object) -> bool:
        return self._at(domid) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"DomainPages({dict(self)!r})"


class Host:
    """Reads the host's identity, physinfo and domains through an open Privcmd."""

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev
        self._ctl = Buffer(max(hc.SYSCTL_SIZE, hc.DOMCTL_SIZE))
        self._records: Buffer | None = None  # getdomaininfolist records, see _listed
        self.identity = self._detect()

    def close(self) -> None:
        self._ctl.close()
        if self._records is not None:
            self._records.close()

    # -- identity -----------------------------------------------------------------------

    def _detect(self) -> Identity:
        word = self._version_word()
        if word.failed:
            raise _refusal("xen_version", word)
        major, minor = word.value >> 16, word.value & 0xFFFF
        extra = self._extraversion()
        release = RELEASES.get((major, minor))
        if release is None:
            raise CannotProbe(
                f"Xen {major}.{minor}{extra} is not in xenprobe's ABI tables "
                f"(supported: {supported()})",
                "a newer xenprobe may know this release; nothing was probed")
        sysctl = self._accepted_interface(
            "sysctl", release.sysctl, SYSCTL_INTERFACES, self._try_physinfo)
        domctl = self._accepted_interface(
            "domctl", release.domctl, DOMCTL_INTERFACES, self._try_getdomaininfo)
        ident = Identity(major, minor, extra, release, sysctl, domctl,
                         physinfo_for_sysctl(sysctl), getdomaininfo_for_domctl(domctl))
        log.debug("detected", **ident.as_json())
        return ident

    def _version_word(self) -> Reading:
        """XENVER_version, read until two reads agree: a garbage answer is no release."""
        word = self.dev.ioctl(hc.XEN_VERSION, args5(hc.XENVER_version))
        for again in range(RETRIES + 1):
            if word.failed:
                break
            second = self.dev.ioctl(hc.XEN_VERSION, args5(hc.XENVER_version))
            if second == word:
                break
            self._invalid("xen_version", f"two reads differ ({word.value:#x}, "
                          f"{second.value:#x})", again)
            word = second
        return word

    def _invalid(self, call: str, problem: str, done: int) -> None:
        """An answer that cannot be right: counted and read again, up to RETRIES times."""
        if done == RETRIES:
            raise CannotProbe(f"the hypervisor answered {call} with an invalid result "
                              f"{RETRIES + 1} times: {problem}")
        log.debug("invalid_result", call=call, problem=problem)
        self.dev.retries[(call, "invalid")] += 1

    def _extraversion(self) -> str:
        with Buffer(hc.XENVER_extraversion_len) as buf:
            r = self.dev.ioctl(hc.XEN_VERSION, args5(hc.XENVER_extraversion, buf.address))
            if r.failed:
                return ""
            return bytes(buf.view).split(b"\0", 1)[0].decode("ascii", "replace")

    def _accepted_interface(self, what: str, expected: int, known: list[int],
                            attempt: object) -> int:
        """The interface version the hypervisor accepts: the release's own first, then
        every other known one (a vendor build may differ). Xen answers -EACCES to any
        version but its own."""
        assert callable(attempt)
        order = [expected] + [v for v in known if v != expected]
        for version in order:
            r: Reading = attempt(version)
            if not r.failed:
                if version != expected:
                    log.warning("interface_version_differs", hypercall=what,
                                expected=hex(expected), accepted=hex(version))
                return version
            if r.errno != errnos.EACCES:
                raise _refusal(what, r)
        raise CannotProbe(
            f"the hypervisor refused every {what} interface version xenprobe knows "
            f"({', '.join(hex(v) for v in order)}) with EACCES: wrong interface version",
            "this hypervisor build speaks an interface outside xenprobe's ABI tables")

    # -- sysctl / domctl ----------------------------------------------------------------

    def _sysctl(self, cmd: int, interface: int, payload: bytes = b"") -> Reading:
        view = self._ctl.view
        view[0:hc.SYSCTL_SIZE] = bytes(hc.SYSCTL_SIZE)
        struct.pack_into("<II", view, 0, cmd, interface)
        view[hc.SYSCTL_UNION:hc.SYSCTL_UNION + len(payload)] = payload
        return self.dev.ioctl(hc.SYSCTL, args5(self._ctl.address))

    def _domctl(self, cmd: int, interface: int, domid: int) -> Reading:
        view = self._ctl.view
        view[0:hc.DOMCTL_SIZE] = bytes(hc.DOMCTL_SIZE)
        struct.pack_into("<IIH", view, 0, cmd, interface, domid)
        return self.dev.ioctl(hc.DOMCTL, args5(self._ctl.address))

    def _try_physinfo(self, interface: int) -> Reading:
        return self._sysctl(hc.XEN_SYSCTL_physinfo, interface)

    def _try_getdomaininfo(self, interface: int) -> Reading:
        return self._domctl(hc.XEN_DOMCTL_getdomaininfo, interface, 0)

    def physinfo(self) -> dict[str, int | bytes]:
        for again in range(RETRIES + 1):
            r = self._try_physinfo(self.identity.sysctl)
            if r.failed:
                raise _refusal("sysctl physinfo", r)
            info = self.identity.physinfo.decode(bytes(self._ctl.view), hc.SYSCTL_UNION)
            problem = invalid_physinfo(info)
            if not problem:
                break
            self._invalid("physinfo", problem, again)
        return info

    def getdomaininfo(self, domid: int) -> DomainInfo | int:
        """One domain's record, or the errno Xen answered (ESRCH for none)."""
        r = self._domctl(hc.XEN_DOMCTL_getdomaininfo, self.identity.domctl, domid)
        if r.failed:
            return r.errno
        d = self.identity.getdomaininfo.decode(bytes(self._ctl.view), hc.DOMCTL_UNION)
        return _domain(d)

    def self_domid(self, domains: list[DomainInfo]) -> int | None:
        """Which listed domain is the caller: the one whose handle XENVER_guest_handle
        returns. Where several share it (dom0's is usually all zeros, as is that of a
        domain created without a UUID), domain 0 if it is among them; else unknown."""
        with Buffer(16) as buf:
            r = self.dev.ioctl(hc.XEN_VERSION, args5(hc.XENVER_guest_handle, buf.address))
            if r.failed:
                return None
            own = bytes(buf.view)
        matches = [d.domid for d in domains if d.handle == own]
        if len(matches) == 1:
            return matches[0]
        return 0 if 0 in matches else None

    def domains(self) -> list[DomainInfo]:
        """Every domain, through sysctl getdomaininfolist in chunks."""
        layout = self.identity.getdomaininfo
        return [_domain(layout.decode(raw, at)) for raw in self._listed()
                for at in range(0, len(raw), layout.size)]

    def domain_pages(self) -> DomainPages:
        """domid -> (tot_pages, max_pages) for every domain, from the same
        getdomaininfolist calls as `domains`: what a sweep's references need, decoded
        with one struct pass per chunk instead of a dict per record (10,000 domains in
        about 3 ms rather than 100)."""
        pages = DomainPages()
        for raw in self._listed():
            pages.extend(self._pages.iter_unpack(raw))
        return pages

    def domain_handles(self) -> dict[int, bytes]:
        """domid -> the domain's handle for every domain, from one getdomaininfolist
        pass: getdomaininfo's `xen_domain_handle_t handle`, the 16 bytes of the UUID the
        toolstack gave the domain (public/domctl.h). It names a domain across reboots;
        a domain id is handed out afresh each time the domain is created."""
        unpack = self._handles.iter_unpack
        return {domid: handle for raw in self._listed() for domid, handle in unpack(raw)}

    def _listed(self) -> Iterator[bytes]:
        """The raw records of every domain, one chunk per getdomaininfolist call."""
        layout = self.identity.getdomaininfo
        if self._records is None:
            # Kept for the Host's life: a sweep lists the domains three times.
            self._records = Buffer(LIST_CHUNK * layout.size)
        records = self._records
        domain = layout.field("domain")
        first = 0
        while first < hc.DOMID_FIRST_RESERVED:
            payload = GETDOMAININFOLIST.encode(
                {"first_domain": first, "max_domains": LIST_CHUNK,
                 "buffer": records.address})
            for again in range(RETRIES + 1):
                r = self._sysctl(hc.XEN_SYSCTL_getdomaininfolist, self.identity.sysctl,
                                 payload)
                if r.failed:
                    raise _refusal("sysctl getdomaininfolist", r)
                head = GETDOMAININFOLIST.decode(bytes(self._ctl.view), hc.SYSCTL_UNION)
                count = int(head["num_domains"])
                raw = bytes(records.view[:min(count, LIST_CHUNK) * layout.size])
                problem = self._invalid_list(first, count, raw)
                if not problem:
                    break
                self._invalid("getdomaininfolist", problem, again)
            yield raw
            if count < LIST_CHUNK:
                break
            last = (count - 1) * layout.size + domain.offset
            first = struct.unpack_from("<" + domain.fmt, raw, last)[0] + 1

    def _invalid_list(self, first: int, count: int, raw: bytes) -> str:
        """What makes a getdomaininfolist answer impossible, or "": more records than
        asked for, or domain ids not strictly increasing from first_domain below the
        reserved ids (Xen walks its sorted domain list)."""
        if count > LIST_CHUNK:
            return f"num_domains {count} above max_domains {LIST_CHUNK}"
        ids = [domid for domid, _, _ in self._pages.iter_unpack(raw)]
        if ids and not first <= ids[0] <= ids[-1] < hc.DOMID_FIRST_RESERVED:
            return f"domain ids {ids[0]}..{ids[-1]} outside {first}..0x7fef"
        # map in C rather than a generator over pairs: 10,000 ids, three times a sweep.
        if any(map(operator.ge, ids, ids[1:])):
            return "domain ids not in increasing order"
        return ""

    @functools.cached_property
    def _handles(self) -> struct.Struct:
        """(domain, handle) of one record, the rest skipped as padding."""
        return record_struct(self.identity.getdomaininfo, ("domain", "handle"))

    @functools.cached_property
    def _pages(self) -> struct.Struct:
        """(domain, tot_pages, max_pages) of one record, the rest skipped as padding."""
        return record_struct(self.identity.getdomaininfo,
                             ("domain", "tot_pages", "max_pages"))


def record_struct(layout: Layout, names: tuple[str, ...]) -> struct.Struct:
    """These fields of one getdomaininfo record in offset order (as each caller lists
    them), the rest skipped as padding."""
    fmt, at = "<", 0
    for f in sorted((layout.field(n) for n in names), key=lambda f: f.offset):
        fmt += f"{f.offset - at}x{f.fmt}"
        at = f.offset + f.size
    packed = struct.Struct(fmt + f"{layout.size - at}x")
    assert packed.size == layout.size
    return packed


def _domain(d: dict[str, int | bytes]) -> DomainInfo:
    handle = d["handle"]
    return DomainInfo(int(d["domain"]), int(d["flags"]), int(d["tot_pages"]),
                      int(d["max_pages"]), handle if isinstance(handle, bytes) else bytes(16),
                      int(d.get("max_vcpu_id", 0)))


MAX_FRAMES = 1 << 52  # 2^64 bytes of address space in 4 KiB frames


def invalid_physinfo(info: dict[str, int | bytes]) -> str:
    """What makes a physinfo answer impossible, or "": more free pages than pages, a
    frame number beyond a 64-bit address space, or no frame at all below max_mfn on a
    host with RAM. total_pages above max_mfn + 1 is possible: max_mfn follows the
    hot-plug range's end, or the 2^32 cap without CONFIG_BIGMEM, not the top of RAM
    (x86/mm.c@RELEASE-4.17.0:6278-6287); but each of its bounds (max_page, the end of a
    hot-pluggable range, 2^32, 2^(paddr_bits - 12)) is far above one frame."""
    total, free, max_mfn = info["total_pages"], info["free_pages"], info["max_mfn"]
    assert isinstance(total, int) and isinstance(free, int) and isinstance(max_mfn, int)
    if max_mfn >= MAX_FRAMES:
        return f"max_mfn {max_mfn:#x} beyond a 64-bit address space"
    if total > MAX_FRAMES:
        return f"total_pages {total:#x} beyond a 64-bit address space"
    if max_mfn == 0 and total > 1:
        return f"max_mfn 0 on a host with {total:#x} pages"
    if free > total:
        return f"free_pages {free:#x} above total_pages {total:#x}"
    return ""


def _refusal(what: str, r: Reading) -> CannotProbe:
    if r.errno == errnos.EPERM:
        return CannotProbe(
            f"the hypervisor refused {what} with EPERM: this is not a control domain "
            "(dom0)", "run xenprobe in dom0")
    name = errnos.errorcode.get(r.errno, str(r.errno))
    if r.errno in RETRYABLE:
        return CannotProbe(f"{what} still failed with {name} ({os.strerror(r.errno)}) "
                           f"after {RETRIES} retries")
    return CannotProbe(f"the hypervisor refused {what}: {name} ({os.strerror(r.errno)})")


def sys_hypervisor_version(root: Path = SYS_HYPERVISOR) -> int | None:
    """(major << 16) | minor from /sys/hypervisor, the kernel's own read of xen_version;
    None where the kernel does not publish it."""
    try:
        if (root / "type").read_text().strip() != "xen":
            return None
        major = int((root / "version" / "major").read_text())
        minor = int((root / "version" / "minor").read_text())
    except (OSError, ValueError):
        return None
    return (major << 16) | minor


def sys_hypervisor_guest_type(root: Path = SYS_HYPERVISOR) -> str | None:
    """What kind of guest this kernel is ("PV", "HVM", "PVH"; a dom0 is PV or PVH), from
    /sys/hypervisor/guest_type (Linux 4.13, torvalds/linux@4a4c29c96dde); None where
    the kernel does not publish it."""
    try:
        text = (root / "guest_type").read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None
