# SPDX-License-Identifier: GPL-2.0-only
"""The libxc layer: each quantity as a C program linked against libxenctrl reads it.

libxenctrl is loaded in cffi's ABI mode (no compiler, no Xen headers) by the SONAME of
the running hypervisor's release, libxenctrl.so.<major>.<minor>, through the normal
loader path; XENPROBE_LIBXENCTRL names a file instead (tests, unusual installs), and
then the file's own SONAME says which release's declarations apply. The declarations
come from xenprobe.xen.abi.libxc.

A reading keeps the C function's own convention: its return type's width, -1 with
errno as failure, anything else as a value (a raw -errno is a value: the classifier
calls it a lost error). Functions that return a status and write the value through a
pointer give the pointed-to value (unsigned long, 64 bits) on success and their int
status on failure.

libxenctrl talks to privcmd itself, not through xenprobe's transport. Before the first
call into it, xenprobe.layers.libxc_guard points the ioctl relocations of libxenctrl and the libxen*
libraries under it at a native guard that applies the transport's read-only allow-list
(anything else: -1/EPERM, never passed on). If the guard cannot be installed the layer
is absent, with the reason as its note. Only the query functions in the table are called.
"""

from __future__ import annotations

import os
import re
import weakref
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cffi import FFI

from xenprobe.layers import libxc_guard as guard
from xenprobe.xen import elf, memop_path
from xenprobe.xen.abi import hypercalls as hc
from xenprobe.xen.abi.libxc import Signatures, Version, known, signatures, soname
from xenprobe.xen.platform_requests import RESOURCE_CPU, RESOURCE_ENTRIES, resource_entries
from xenprobe.xen.quantities import KEXEC_TYPE, Probe, Quantity, Subject
from xenprobe.xen.reading import Columns, Reading
from xenprobe.xen.transport import Args

log = structlog.get_logger("xenprobe.layers.libxc")

NAME = "libxc"
ENV = "XENPROBE_LIBXENCTRL"
_SONAME = re.compile(r"^libxenctrl\.so\.(\d+)\.(\d+)$")
# What every libxc reading needs; a library without them is not what its SONAME says.
REQUIRED = ("xc_interface_open", "xc_interface_close", "xc_version",
            "xc_maximum_ram_page", "xc_domain_maximum_gpfn", "xc_get_tot_pages")
MEMORY_DOMAIN_SIZE = 2  # struct xen_memory_domain { domid_t domid; }
S64 = 1 << 63


class Unavailable(Exception):
    """libxenctrl cannot be used here; the message says why, for the note line."""


@dataclass(frozen=True)
class Library:
    ffi: FFI
    lib: Any
    path: str          # what was handed to dlopen
    signatures: Signatures
    file: Path | None = None  # the file the loader mapped, where it can be found

    @property
    def release(self) -> Version:
        return self.signatures.release

    @property
    def memory_op_path(self) -> memop_path.MemoryOpPath | None:
        """How this library issues memory ops (xenprobe.xen.memop_path): read from the
        loaded file, not from the hypervisor's release."""
        if self.file is None:
            return memop_path.by_release(self.release)
        return memop_path.of_file(self.file, self.release)


def loaded_file(name: str, maps: str = "/proc/self/maps") -> Path | None:
    """The file the loader mapped for a library loaded by this name (a SONAME such as
    libxenctrl.so.4.17 maps libxenctrl.so.4.17.0), from this process's mappings."""
    try:
        with open(maps) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
        if path.startswith("/") and Path(path).name.startswith(name):
            return Path(path)
    return None


def _name(release: Version) -> str:
    return f"{release[0]}.{release[1]}"


def _release_of(name: str) -> Version | None:
    m = _SONAME.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _dlerror(e: OSError) -> str:
    """The loader's own words from cffi's message (which adds its own preamble)."""
    text = str(e).split(".  Additionally", 1)[0]
    return text.split("': ", 1)[1] if "': " in text else text


def load(hypervisor: Version, environ: dict[str, str] | None = None) -> Library:
    """libxenctrl for this hypervisor release (or the file XENPROBE_LIBXENCTRL names),
    with its release's declarations. Raises Unavailable."""
    env = os.environ if environ is None else environ
    override = env.get(ENV, "")
    if override:
        path = Path(override)
        if not path.exists():
            raise Unavailable(f"{ENV}={override}: no such file")
        if not path.is_file():
            raise Unavailable(f"{ENV}={override}: not a regular file")
        name = elf.soname(path)
        if name is None:
            raise Unavailable(f"{ENV}={override}: not a shared library with a SONAME")
        release = _release_of(name)
        if release is None:
            raise Unavailable(f"{ENV}={override}: SONAME {name} is not libxenctrl's")
        target = str(path)
    else:
        release, name = hypervisor, soname(hypervisor)
        target = name
    sig = signatures(release)
    if sig is None:
        raise Unavailable(f"no libxenctrl signature table for Xen {_name(release)} "
                          f"(xenprobe knows {known()}); layer skipped")
    ffi = FFI()
    ffi.cdef(sig.cdef())
    try:
        lib = ffi.dlopen(target)
    except OSError as e:
        reason = _dlerror(e)
        if reason.startswith(f"{target}: cannot open shared object file"):
            raise Unavailable(f"{name} not found") from None
        raise Unavailable(f"{name} cannot be loaded: {reason}") from None
    for fn in REQUIRED:
        try:
            getattr(lib, fn)
        except AttributeError:
            raise Unavailable(f"{name} does not export {fn}") from None
    file = Path(target) if override else loaded_file(name)
    return Library(ffi, lib, target, sig, file)


class Absent:
    """The libxc column where libxenctrl cannot be used: every probe absent, and why."""

    name = NAME

    def __init__(self, reason: str) -> None:
        self.note = reason
        self.description = f"libxenctrl unavailable: {reason}"

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return [None] * len(probes)

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        return Columns.of(self.read_many(probes, calls))

    def read_request(self, probe: Probe, request: object) -> Reading | None:
        return None

    def via_reference(self, probe: Probe) -> bool:
        return False


def _path_note(library: Library) -> str:
    """A note where libxenctrl's memory ops go through the int ioctl (or may): its
    maximum_ram_page and maximum_gpfn then lose what the ioctl loses."""
    where = f"libxenctrl {_name(library.release)}"
    if library.memory_op_path == "ioctl":
        return (f"{where} issues memory ops through the int ioctl (libxenctrl before "
                "4.15.1 does): its memory-op values lose bits as the ioctl's do")
    if library.memory_op_path is None:
        return (f"{where}: cannot tell whether it issues memory ops through the int ioctl "
                "(4.15.0) or a multicall (4.15.1 and later)")
    return ""


def _s64(u: int) -> int:
    return u - (1 << 64) if u >= S64 else u


def _status(ret: int, errno: int, width: int) -> tuple[int, int, int]:
    """(value, errno, width) of a return value. Failure is -1 with errno; -1 without
    errno, or any other negative, is a value."""
    if ret == -1 and errno:
        return -1, errno, width
    return ret, 0, width



class LibxcLayer:
    """Reads through one open xc_interface."""

    name = NAME

    def __init__(self, library: Library, hypervisor: Version) -> None:
        self.library = library
        self.ffi = library.ffi
        self.lib = library.lib
        self.signatures = library.signatures
        self.memory_op_path = library.memory_op_path
        self.description = (f"libxenctrl {_name(library.release)} ({library.path}): "
                            "the C functions' own return types")
        self.note = _path_note(library)
        if library.release != hypervisor:
            # Its domctl and sysctl requests would carry another release's interface
            # version and be refused (EACCES): that is a mismatched install, not a value
            # lost on the way, so the column is absent rather than full of errors.
            raise Unavailable(
                f"{library.path} is libxenctrl {_name(library.release)}, the hypervisor is "
                f"Xen {_name(hypervisor)}: a toolstack built for another release")
        try:
            slots = guard.protect(library.signatures.soname)
        except guard.NotGuarded as e:
            # Fail closed: without the guard libxenctrl could issue any hypercall.
            raise Unavailable(f"read-only guard not installed: {e}") from None
        self.ffi.errno = 0
        xch = self.lib.xc_interface_open(self.ffi.NULL, self.ffi.NULL, 0)
        if xch == self.ffi.NULL:
            raise Unavailable(f"xc_interface_open failed: {os.strerror(self.ffi.errno)}")
        self.xch = xch
        self._close = weakref.finalize(self, self.lib.xc_interface_close, xch)
        self._domid = self.ffi.new("uint16_t *")
        self._ulong = self.ffi.new("unsigned long *")
        self._resource_op = self.ffi.new("xc_resource_op_t *")
        self._resource_entries = self.ffi.new("char[]", len(resource_entries()))
        self._nr = self.ffi.new("unsigned int *")       # livepatch LIST's payload count
        self._totals = self.ffi.new("uint32_t[2]")      # ... its name and metadata sizes
        # offers() per (quantity, subject): the answer depends on nothing else.
        self._offers: dict[tuple[Quantity, Subject], str | None] = {}
        log.debug("libxc_open", library=library.path, release=_name(library.release),
                  guarded_slots=slots)

    def close(self) -> None:
        self._close()

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return [self.read(p) for p in probes]

    def read_request(self, probe: Probe, request: object) -> Reading | None:
        """libxenctrl issues the struct itself (xc_livepatch_list_get_sizes: the same
        request), as it reads any one probe."""
        return self.read(probe)

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many as columns: one libxenctrl call per probe all the same, without a
        Reading object per probe (a sweep of 10,000 domains makes 30,000 calls). raw is
        not needed: libxenctrl's functions return the value or -1 with errno."""
        values, errnos, widths = array("q"), array("i"), array("b")
        absent = []
        offers, value = self._offers, self._value
        for i, probe in enumerate(probes):
            key = (probe.quantity, probe.subject)
            if key not in offers:
                offers[key] = self.offers(probe)
            fn = offers[key]
            if fn is None:
                absent.append(i)
                values.append(0)
                errnos.append(0)
                widths.append(64)
                continue
            v, e, w = value(fn, probe)
            values.append(v)
            errnos.append(e)
            widths.append(w)
        return Columns(values, errnos, widths, frozenset(absent))

    def via_reference(self, probe: Probe) -> bool:
        return self.offers(probe) == "xc_get_tot_pages"

    def offers(self, probe: Probe) -> str | None:
        """The libxenctrl function that reads this probe, or None."""
        q = probe.quantity
        op, _ = probe.call
        if q in (Quantity.XEN_VERSION, Quantity.XEN_PAGESIZE):
            # Both take NULL (xc_private.c@4.17:500-523). Not build_id: xc_version reads
            # its len through the pointer (:530-533), and it has no case for the *2 ones.
            return "xc_version"
        if q is Quantity.MAXIMUM_RAM_PAGE:
            return "xc_maximum_ram_page"
        if q is Quantity.MAXIMUM_GPFN:
            return "xc_domain_maximum_gpfn"
        if q is Quantity.CURRENT_RESERVATION and probe.subject is not Subject.SELF:
            # libxc's own call for a domain's pages (domctl getdomaininfo underneath);
            # it cannot name DOMID_SELF, which domctl does not accept.
            return "xc_get_tot_pages"
        if op == hc.MEMORY_OP and "xc_memory_op" in self.signatures.names:
            return "xc_memory_op"
        if q in KEXEC_TYPE and "xc_kexec_status" in self.signatures.names:
            return "xc_kexec_status"
        if q is Quantity.RESOURCE_OP_DONE and "xc_resource_op" in self.signatures.names:
            return "xc_resource_op"
        if (q is Quantity.LIVEPATCH_LISTED
                and "xc_livepatch_list_get_sizes" in self.signatures.names):
            # LIST with nr 0, as xenprobe issues it; the ioctl's int when not 0 (4.14+).
            return "xc_livepatch_list_get_sizes"
        # get_debugreg, hypfs_op, the *2 lengths, get_dom0_console, VCPUOP_is_up
        # (xc_vcpu_getinfo reads domctl getvcpuinfo, another hypercall), and livepatch
        # on 4.13 (only xc_livepatch_list, which returns 0, not LIST's rc): libxenctrl
        # has no call.
        return None

    def read(self, probe: Probe) -> Reading | None:
        fn = self.offers(probe)
        if fn is None:
            return None
        return Reading(*self._value(fn, probe))

    def _value(self, fn: str, probe: Probe) -> tuple[int, int, int]:
        """(value, errno, width) of one call, as `read` reports it. errno is cleared
        before each call: a stale errno must not pass for the function's own."""
        lib, xch, ffi = self.lib, self.xch, self.ffi
        domid = probe.domid if probe.domid is not None else hc.DOMID_SELF
        if fn in ("xc_maximum_ram_page", "xc_domain_maximum_gpfn"):
            # An int status and an unsigned long written through a pointer.
            out = self._ulong
            out[0] = 0
            ffi.errno = 0
            ret = int(lib.xc_maximum_ram_page(xch, out) if fn == "xc_maximum_ram_page"
                      else lib.xc_domain_maximum_gpfn(xch, domid, out))
            if ret == 0:
                return _s64(int(out[0])), 0, 64
            return _status(ret, int(ffi.errno), 32)
        if fn == "xc_version":
            ffi.errno = 0
            return _status(int(lib.xc_version(xch, probe.call[1], ffi.NULL)),
                           int(ffi.errno), 32)
        if fn == "xc_resource_op":
            # One op, so one platform_op through do_platform_op's int (xc_resource.c@4.17:
            # 22-41); the same entries the other layers ask for, in memory libxc bounces.
            op = self._resource_op
            op.result, op.cpu, op.nr_entries = 0, RESOURCE_CPU, RESOURCE_ENTRIES
            ffi.memmove(self._resource_entries, resource_entries(), len(resource_entries()))
            op.entries = self._resource_entries
            ffi.errno = 0
            return _status(int(lib.xc_resource_op(xch, 1, op)), int(ffi.errno), 32)
        if fn == "xc_livepatch_list_get_sizes":
            ffi.errno = 0
            return _status(int(lib.xc_livepatch_list_get_sizes(
                xch, self._nr, self._totals, self._totals + 1)), int(ffi.errno), 32)
        if fn == "xc_get_tot_pages":
            ffi.errno = 0
            return _status(int(lib.xc_get_tot_pages(xch, domid)), int(ffi.errno), 64)
        if fn == "xc_kexec_status":
            ffi.errno = 0
            return _status(int(lib.xc_kexec_status(xch, KEXEC_TYPE[probe.quantity])),
                           int(ffi.errno), 32)
        _, cmd = probe.call
        self._domid[0] = domid
        ffi.errno = 0
        return _status(int(lib.xc_memory_op(xch, cmd, self._domid, MEMORY_DOMAIN_SIZE)),
                       int(ffi.errno), 64)


def layer(hypervisor: Version, environ: dict[str, str] | None = None) -> LibxcLayer | Absent:
    """The libxc layer for this hypervisor, or an Absent one saying why not. Never
    raises: a missing or unusable libxenctrl must not cost the other layers."""
    try:
        return LibxcLayer(load(hypervisor, environ), hypervisor)
    except Unavailable as e:
        log.debug("libxc_absent", reason=str(e))
        return Absent(str(e))
    except Exception as e:  # cffi parse errors, a broken library: never fail the ladder
        log.warning("libxc_failed", error=f"{type(e).__name__}: {e}")
        return Absent(f"libxenctrl could not be used: {type(e).__name__}: {e}")
