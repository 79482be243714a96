# SPDX-License-Identifier: GPL-2.0-only
"""The Layer protocol and the ladder: each way a hypercall result reaches user space.

The raw 64-bit result (a multicall entry's `result`) is the truth the rungs below are
compared with; it is read by the sweep itself, before and after the rungs. Adding a
layer (libxc) means adding one entry to `ladder()` and its name to `NAMES`, nothing
else: the sweep, the command line and the metrics only speak the `Layer` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from xenprobe.layers import libxc
from xenprobe.xen.host import Identity
from xenprobe.xen.quantities import Probe
from xenprobe.xen.reading import Columns, Reading
from xenprobe.xen.transport import Args, Calls, Privcmd


class Request(Protocol):
    """A probe whose call carries a struct (livepatch LIST): issued whole by the kernel
    layers, since a batch takes by-value calls only."""

    def read(self, *, syscall: bool) -> tuple[Reading, int | None]: ...


class Layer(Protocol):
    name: str
    description: str
    note: str  # why the column is empty or partial, for the report; "" when nothing

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        """One reading per probe; None where this layer does not offer the quantity."""
        ...

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many column-wise (a sweep compares columns in bulk); raw, the multicall
        results where there are any, lets an int path tell an alias from a transient
        failure."""
        ...

    def read_request(self, probe: Probe, request: Request) -> Reading | None:
        """The reading of one probe whose call carries a struct (see Request)."""
        ...

    def via_reference(self, probe: Probe) -> bool:
        """True where this layer reads the quantity through the independent source's
        hypercall rather than the probe's own (libxc's xc_get_tot_pages reads domctl
        getdomaininfo, not memory_op): such a reading is judged against the reference."""
        ...


class SyscallLayer:
    name = "syscall"
    description = "the ioctl system call's long return (the kernel's privcmd path)"
    note = ""

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return list(self.dev.many(calls, syscall=True))

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many as columns (see Sweeper: a sweep compares columns in bulk); raw,
        the multicall results, tells an aliased value from a transient failure."""
        values, errnos = self.dev.many_values(Calls.of(calls), syscall=True, raw=raw)
        return Columns(values, errnos, 64)

    def read_request(self, probe: Probe, request: Request) -> Reading | None:
        return request.read(syscall=True)[0]

    def via_reference(self, probe: Probe) -> bool:
        return False


class IoctlLayer:
    name = "ioctl"
    description = "glibc ioctl(): an int, and -1 with errno for [-4095,-1]"
    note = ""

    def __init__(self, dev: Privcmd) -> None:
        self.dev = dev

    def read_many(self, probes: Sequence[Probe],
                  calls: Sequence[tuple[int, Args]]) -> list[Reading | None]:
        return list(self.dev.many(calls, syscall=False))

    def read_columns(self, probes: Sequence[Probe], calls: Sequence[tuple[int, Args]],
                     raw: Sequence[int] | None = None) -> Columns:
        """read_many as columns (see Sweeper: a sweep compares columns in bulk); raw,
        the multicall results, tells an aliased value from a transient failure."""
        values, errnos = self.dev.many_values(Calls.of(calls), syscall=False, raw=raw)
        return Columns(values, errnos, 32)

    def read_request(self, probe: Probe, request: Request) -> Reading | None:
        return request.read(syscall=False)[0]

    def via_reference(self, probe: Probe) -> bool:
        return False


# Every layer's name, in ladder order: the metrics keep a series for each, present or not.
NAMES: tuple[str, ...] = (SyscallLayer.name, IoctlLayer.name, libxc.NAME)


def ladder(dev: Privcmd, identity: Identity | None = None) -> list[Layer]:
    """Every layer below the raw result, from the kernel up. With the host's identity,
    libxc too: present when libxenctrl for its release loads, else absent with a note."""
    layers: list[Layer] = [SyscallLayer(dev), IoctlLayer(dev)]
    if identity is not None:
        layers.append(libxc.layer((identity.release.major, identity.release.minor)))
    return layers
