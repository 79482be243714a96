"""The Xen host as xenprobe sees it through privcmd: which release, which interface
versions, physinfo and the domain list. An I/O shell: decoding lives in abi.layouts."""

from __future__ import annotations

import errno as errnos
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import structlog

from xenprobe.abi import hypercalls as hc
from xenprobe.abi.layouts import GETDOMAININFOLIST, Layout
from xenprobe.abi.releases import (
    DOMCTL_INTERFACES,
    RELEASES,
    SYSCTL_INTERFACES,
    Release,
    getdomaininfo_for_domctl,
    physinfo_for_sysctl,
    supported,
)
from xenprobe.errors import CannotProbe
from xenprobe.reading import Reading
from xenprobe.transport import Buffer, Privcmd, args5

log = structlog.get_logger("xenprobe.host")

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


class Host:
    """Reads the host's identity, physinfo and domains through an open Privcmd."""

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev
        self._ctl = Buffer(max(hc.SYSCTL_SIZE, hc.DOMCTL_SIZE))
        self.identity = self._detect()

    def close(self) -> None:
        self._ctl.close()

    # -- identity -----------------------------------------------------------------------

    def _detect(self) -> Identity:
        word = self.dev.ioctl(hc.XEN_VERSION, args5(hc.XENVER_version))
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
        r = self._try_physinfo(self.identity.sysctl)
        if r.failed:
            raise _refusal("sysctl physinfo", r)
        return self.identity.physinfo.decode(bytes(self._ctl.view), hc.SYSCTL_UNION)

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
        out: list[DomainInfo] = []
        first = 0
        with Buffer(LIST_CHUNK * layout.size) as records:
            while first < hc.DOMID_FIRST_RESERVED:
                payload = GETDOMAININFOLIST.encode(
                    {"first_domain": first, "max_domains": LIST_CHUNK,
                     "buffer": records.address})
                r = self._sysctl(hc.XEN_SYSCTL_getdomaininfolist, self.identity.sysctl,
                                 payload)
                if r.failed:
                    raise _refusal("sysctl getdomaininfolist", r)
                head = GETDOMAININFOLIST.decode(bytes(self._ctl.view), hc.SYSCTL_UNION)
                count = int(head["num_domains"])
                raw = bytes(records.view[:count * layout.size])
                batch = [_domain(layout.decode(raw, i * layout.size)) for i in range(count)]
                out.extend(batch)
                if count < LIST_CHUNK:
                    break
                first = batch[-1].domid + 1
        return out


def _domain(d: dict[str, int | bytes]) -> DomainInfo:
    handle = d["handle"]
    return DomainInfo(int(d["domain"]), int(d["flags"]), int(d["tot_pages"]),
                      int(d["max_pages"]), handle if isinstance(handle, bytes) else bytes(16))


def _refusal(what: str, r: Reading) -> CannotProbe:
    if r.errno == errnos.EPERM:
        return CannotProbe(
            f"the hypervisor refused {what} with EPERM: this is not a control domain "
            "(dom0)", "run xenprobe in dom0")
    name = errnos.errorcode.get(r.errno, str(r.errno))
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
